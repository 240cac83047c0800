// Loaded into an engine process (NODE_OPTIONS=--import) by a test on a machine whose resolver gives
// `localhost` one address only: asked for all of them, it then answers 127.0.0.1 and ::1, as most
// machines do (Debian's default /etc/hosts has both). A test double for the machine's hosts file,
// which a test may not edit; every other lookup is the real one.
import dns from 'node:dns';

const realLookup = dns.lookup;

dns.lookup = function lookup(hostname, options, callback) {
  if (hostname === 'localhost' && typeof options === 'object' && options !== null && options.all === true && typeof callback === 'function') {
    process.nextTick(callback, null, [
      { address: '127.0.0.1', family: 4 },
      { address: '::1', family: 6 },
    ]);
    return {};
  }
  return realLookup.call(this, hostname, options, callback);
};
