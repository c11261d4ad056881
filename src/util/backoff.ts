/** Exponential back-off between restarts or retries. */
export interface BackoffPolicy {
  /** Delay before the first retry, in seconds. */
  initial: number;
  /** Upper bound of the delay, in seconds. */
  max: number;
  /** Factor applied to the delay after each consecutive failure. */
  factor: number;
}

/** Delay in milliseconds before retry number `attempt` (0-based). */
export function backoffDelay(policy: BackoffPolicy, attempt: number): number {
  const seconds = Math.min(policy.max, policy.initial * Math.pow(policy.factor, Math.max(0, attempt)));
  return Math.round(seconds * 1000);
}
