import { closeSync, openSync } from 'node:fs';
import { isatty } from 'node:tty';
import type { CommandMode } from './processTree';
import { procStat } from './processTree';

/**
 * How to run the command (see {@link CommandMode}): `terminal` when
 * singleton-run was started from a terminal — one of its standard streams is a
 * terminal and it has a controlling terminal — so that the command can prompt
 * (sudo, ssh), read the terminal and get Ctrl-C like any foreground command;
 * `group` otherwise (cron, systemd, CI, a pipe), where the command leads its own
 * process group and session.
 *
 * Node can neither put a child in a new process group of the same session nor
 * hand it the terminal (setpgid/tcsetpgrp), so a command in a group of its own
 * would lose the terminal (`detached` means setsid). The command therefore stays
 * in singleton-run's group when there is a terminal, as `timeout --foreground` does.
 */
export function commandMode(): CommandMode {
  if (![0, 1, 2].some((fd) => isatty(fd))) return 'group';
  return hasControllingTerminal() ? 'terminal' : 'group';
}

/** Whether this process has a controlling terminal (`/dev/tty` opens). */
export function hasControllingTerminal(): boolean {
  try {
    closeSync(openSync('/dev/tty', 'r'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether this process's group is its terminal's foreground group, i.e. a
 * SIGINT it gets most likely came from the terminal (Ctrl-C), which delivered it
 * to the command as well. Known on Linux; elsewhere assumed.
 */
export function inTerminalForeground(): boolean {
  const stat = procStat('self');
  return stat === undefined || (stat.tpgid > 0 && stat.tpgid === stat.pgrp);
}
