import { MemoryPersister } from '../../lib/persisters/MemoryPersister';
import { describePersister } from './conformance';

describePersister('MemoryPersister', async () => ({ persister: new MemoryPersister() }));
