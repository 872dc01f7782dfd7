// The control socket's protocol, the one surface lockdropd (the server) and lockdropctl (the
// client) share: neither reaches into the other's folder for it.
export * from './protocol';
