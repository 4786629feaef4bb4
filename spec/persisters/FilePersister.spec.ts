import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FilePersister } from '../../lib/persisters/FilePersister';
import { describePersister } from './conformance';

describePersister('FilePersister', async () => {
  const root = mkdtempSync(join(tmpdir(), 'sp-file-conf-'));
  const dir = join(root, 'store');
  const persister = new FilePersister({ dir });
  return {
    persister,
    cleanup: async () => {
      await persister.close();
      rmSync(root, { recursive: true, force: true });
    },
    // The store's "data loss": a tmp cleaner wiping the directory. The fence must still increase.
    restart: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
