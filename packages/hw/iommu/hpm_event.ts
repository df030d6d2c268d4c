/**
 * Where the translation path reports the standard HPM events (spec chapter 5, "Hardware
 * performance monitor"). A leaf module: the page walker and the translator both count into a
 * sink, so the sink's type must live below both.
 *
 * @module
 */

/** Receives the standard HPM events as they happen. */
export interface HpmEventSink {
  /** Counts one occurrence of `eventId` with the IDs the counter filters look at. */
  count(
    eventId: number,
    deviceId: number,
    pidValid: boolean,
    pid: number,
    gscidValid: boolean,
    gscid: number,
    pscidValid: boolean,
    pscid: number,
  ): void;
}
