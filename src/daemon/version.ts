// The version every command reports (`--version`, status, the start line, lockdrop_build_info):
// package.json's, read where the code runs (the repository, or /usr/lib/lockdrop when installed).
export const VERSION: string = (require('../../package.json') as { version: string }).version;
