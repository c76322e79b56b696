import { ErrorCodes, type ErrorCode } from './codes';

/**
 * The one error type the project raises on purpose. It carries a stable `code` from the
 * catalog, a human `message`, optional structured `details`, and the underlying `cause`.
 */
export class FleetError extends Error {
  override readonly name = 'FleetError';
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    const entry = ErrorCodes[code];
    super(message ? `${entry.message}: ${message}` : entry.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = entry.retryable;
    this.details = options?.details;
  }

  /** A form safe to put on the wire: no stack. */
  toJSON(): { code: ErrorCode; message: string; details?: Readonly<Record<string, unknown>> } {
    return this.details === undefined ? { code: this.code, message: this.message } : { code: this.code, message: this.message, details: this.details };
  }
}

export function isFleetError(e: unknown, code?: ErrorCode): e is FleetError {
  return e instanceof FleetError && (code === undefined || e.code === code);
}
