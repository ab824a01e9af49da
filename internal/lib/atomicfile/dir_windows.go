package atomicfile

// canSyncDir is false: Windows cannot open a directory for syncing.
const canSyncDir = false
