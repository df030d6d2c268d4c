/**
 * Where the translation path reports the standard HPM events (spec §5.23, "Performance-monitoring
 * event selectors") and the model's own cache events. A leaf module: the page walker and the
 * translator both count into a sink, so the sink's type must live below both.
 *
 * @module
 */

/**
 * A process context found in the PDT cache (no PDT walk). Not a standard event: its ID lies above
 * the 15-bit `eventID` field, so no selector can pick it; a vendor HPM maps it to its own event
 * (the SpacemiT T100's PDTC hits).
 */
export const HPMEVENT_PDT_CACHE_HIT = 0x8000;

/** Receives the HPM events as they happen. */
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
