// Trace files: a whole pcap read at once (replay), records appended as they come (record).
// The format is codec/pcap.ts's.
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { decodePcap, encodePcapHeader, encodePcapRecord, type TraceRecord } from './codec/pcap';

/** A whole trace file, decoded. */
export const readTrace = (path: string): TraceRecord[] => decodePcap(readFileSync(path));

/** Appends records to a pcap file, synchronously: a killed recorder leaves a readable file. */
export class TraceWriter {
  private fd: number | undefined;
  count = 0;

  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
    writeSync(this.fd, encodePcapHeader());
  }

  write(r: TraceRecord): void {
    if (this.fd === undefined) throw new Error(`trace ${this.path} is closed`);
    writeSync(this.fd, encodePcapRecord(r));
    this.count++;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}
