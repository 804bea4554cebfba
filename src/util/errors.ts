/** Base of every error wnod raises on purpose: `code` is stable and machine-matchable, `message` is for people. */
export class WnodError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** A usage error on the command line (exit 2). */
export class UsageError extends WnodError {
  constructor(message: string) {
    super('usage', message);
  }
}

/** Render any thrown value as one line for a person. */
export function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
