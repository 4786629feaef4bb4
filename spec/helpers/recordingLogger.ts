import type { Logger } from '../../lib/logger';

/** One line a {@link recordingLogger} kept. */
export interface RecordedLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg?: string;
  obj: object;
}

/** A pino-compatible logger that keeps what it is given, so a test can read the log. */
export function recordingLogger(): { logger: Logger; lines: RecordedLine[]; at(level: RecordedLine['level']): RecordedLine[] } {
  const lines: RecordedLine[] = [];
  const write =
    (level: RecordedLine['level']) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg, obj });
    };
  const logger: Logger = { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
  return { logger, lines, at: (level) => lines.filter((l) => l.level === level) };
}
