/** Base of every error wnod raises on purpose: `code` is stable and machine-matchable, `message` is for people;
 * `cause` keeps the error it wraps. */
export class WnodError extends Error {
  constructor(readonly code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
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
