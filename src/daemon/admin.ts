// What the operator's commands may target: an address or export lockdrop does not manage is
// refused with the reason, never accepted as a silent no-op.
export interface AddressView {
  /** The floating filter (configuration `addresses`) takes it in. */
  manages(address: string): boolean;
  /** This node holds it now. */
  holds(address: string): boolean;
  /** Locks, shares or queued requests were taken through it (e.g. it left the filter on a reload). */
  hasLocks(address: string): boolean;
}

export type AddressCommand = 'grace start' | 'grace end' | 'drop';

/** Throws when `command` makes no sense for `address` on this node. */
export function checkAddressTarget(command: AddressCommand, address: string, view: AddressView): void {
  if (command === 'drop') {
    // Locks through an address are always droppable (one that left the filter on a reload keeps them until then).
    if (view.hasLocks(address)) return;
    if (!view.manages(address)) throw new Error(`${address} is not an address lockdrop manages here and no lock was taken through it`);
    if (!view.holds(address)) throw new Error(`${address} is not held by this node and no lock was taken through it`);
    return;
  }
  if (!view.manages(address)) throw new Error(`${address} is not an address lockdrop manages here (see \`addresses\` in the configuration)`);
  // Only the holder runs an address's grace: on another node it would refuse that node's clients nothing.
  if (command === 'grace start' && !view.holds(address)) throw new Error(`${address} is not held by this node: only its holder runs its grace`);
}

/** Throws unless `exportId` is a configured export. */
export function checkExportTarget(exportId: string, configured: readonly string[]): void {
  if (!configured.includes(exportId)) throw new Error(`no export ${exportId} is configured${configured.length ? ` (known: ${configured.join(', ')})` : ' (the exports table is empty)'}`);
}
