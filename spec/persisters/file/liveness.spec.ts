/**
 * The file store's verdict on whether a lock's writer is dead. Only "certainly dead"
 * breaks a lock early; everything uncertain leaves it to the lease's expiry.
 */
import { spawnSync } from 'node:child_process';
import { isDead, judgeDead, selfIdentity } from '../../../lib/persisters/file/liveness';

describe('judgeDead (the two probes: kill(pid, 0) and /proc/<pid>/stat)', () => {
  const live = { state: 'S', start: '100' };
  it('no such process (ESRCH): dead', () => {
    expect(judgeDead('esrch', null, '100')).toBe(true);
  });
  it("someone else's process (EPERM) whose /proc entry is hidden (hidepid=2): alive, not dead", () => {
    expect(judgeDead('eperm', 'gone', '100')).toBe(false);
  });
  it('our own process gone from /proc: dead', () => {
    expect(judgeDead('ok', 'gone', '100')).toBe(true);
  });
  it('a zombie (killed, not yet reaped): dead; a reused pid (other start time): dead; the same process: alive', () => {
    expect(judgeDead('ok', { state: 'Z', start: '100' }, '100')).toBe(true);
    expect(judgeDead('eperm', { state: 'S', start: '999' }, '100')).toBe(true);
    expect(judgeDead('ok', live, '100')).toBe(false);
    expect(judgeDead('eperm', live, '100')).toBe(false);
  });
  it('no procfs: only the signal probe decides', () => {
    expect(judgeDead('ok', null, '100')).toBe(false);
    expect(judgeDead('eperm', null, '100')).toBe(false);
  });
});

describe('isDead on this machine', () => {
  it('this process is alive; a process that exited is dead', () => {
    const me = selfIdentity();
    expect(isDead(me)).toBe(false);
    const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
    expect(isDead({ ...me, pid: Number(child.stdout), start: '' })).toBe(true);
  });
});
