// Test hosts for browser tests that need more than one machine: each host is a network
// namespace with one veth into it, the other end on a bridge in the test's own namespace.
// The bridge carries the server's address, so the server runs where the test runs and each
// Chromium runs inside its host's namespace (through an executablePath wrapper).
//
// Needs root (ip netns, veth, bridge, tc, nft). Addresses come from 198.18.0.0/15 (reserved for
// benchmarking); nothing here touches any other interface. run.sh runs the tests inside
// `unshare -n`, so the bridge and the bridge-side veths die with that namespace; the named
// namespaces (/run/netns, shared with the whole machine) are deleted by `cleanUp()`, which
// also runs when the process exits or is interrupted.
//
// Usage:
//   const net = new TestNet({ serverIp: '198.18.0.1', hosts: { ann: '198.18.0.10' } });
//   net.up();                                  // bridge with the server's address, hosts
//   launchBrowser({ executablePath: net.chromium('ann', origin) });
//   net.shapeDownlink('ann', '300kbit');       // tc tbf on the bridge-side veth
//   net.dropDownlink('ann', 2);                // nftables drops 2 % of UDP to the host
//   net.dropStats('ann');                      // { udp, dropped } packets so far
//   net.cleanUp();

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { OUT_DIR, PlazaServer } from './harness.mjs';

export const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
export const tc = (...args) => execFileSync('tc', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
export const nft = (...args) => execFileSync('nft', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

// Every TestNet of this process, for the exit handler.
const live = new Set();
let exitHooked = false;

function hookExit() {
  if (exitHooked) return;
  exitHooked = true;
  // A failed test still runs `after`; these catch a process that ends without it (an
  // uncaught error, a runner's SIGTERM/SIGINT). Namespaces would otherwise outlive the run.
  process.on('exit', () => {
    for (const n of live) n.cleanUp();
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.once(signal, () => {
      for (const n of live) n.cleanUp();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

export class TestNet {
  /**
   * `hosts`: name → address (in `serverIp`'s /24). Names of namespaces and interfaces
   * carry this process's id: namespaces are visible machine-wide, and two test processes
   * (or a leftover of a killed one) must not collide. Interface names stay within
   * Linux's 15 characters.
   */
  constructor({ serverIp, hosts, prefix = 'pz' }) {
    const tag = process.pid % 100000;
    this.serverIp = serverIp;
    this.bridge = `${prefix}br${tag}`;
    // dropDownlink's nftables table (bridge family), in the test's namespace.
    this.nftTable = `${prefix}loss${tag}`;
    this.hosts = {};
    Object.entries(hosts).forEach(([name, addr], i) => {
      this.hosts[name] = {
        name,
        ns: `${prefix}-${name}-${tag}`,
        // The bridge-side end, in the test's namespace: its egress is the host's downlink.
        veth: `${prefix}v${tag}h${i}`,
        addr,
      };
    });
  }

  host(name) {
    const h = this.hosts[name];
    if (!h) throw new Error(`no host ${name}`);
    return h;
  }

  /** Makes the bridge (with the server's address) and every host. */
  up() {
    hookExit();
    live.add(this);
    this.#remove(); // a leftover of an earlier process with the same id
    ip('link', 'add', this.bridge, 'type', 'bridge');
    ip('addr', 'add', `${this.serverIp}/24`, 'dev', this.bridge);
    ip('link', 'set', this.bridge, 'up');
    for (const h of Object.values(this.hosts)) this.#makeHost(h);
    return this;
  }

  /** A host: its own namespace, a veth into it (eth0 there), the other end on the bridge. */
  #makeHost(h) {
    ip('netns', 'add', h.ns);
    ip('link', 'add', h.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', h.ns);
    ip('link', 'set', h.veth, 'master', this.bridge, 'up');
    ip('-n', h.ns, 'link', 'set', 'lo', 'up');
    ip('-n', h.ns, 'addr', 'add', `${h.addr}/24`, 'dev', 'eth0');
    ip('-n', h.ns, 'link', 'set', 'eth0', 'up');
  }

  /**
   * A Chromium wrapper that runs inside the host's namespace: Playwright starts whatever
   * executablePath names. `origin` is the page's origin (http://<bridge address>:port),
   * not localhost, so camera access needs it treated as secure.
   */
  chromium(name, origin) {
    const h = this.host(name);
    fs.mkdirSync(OUT_DIR, { recursive: true });
    const wrapper = path.join(OUT_DIR, `chromium-${h.ns}.sh`);
    const bin = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
    fs.writeFileSync(
      wrapper,
      `#!/bin/sh\nexec ip netns exec ${h.ns} ${bin} --unsafely-treat-insecure-origin-as-secure=${origin} "$@"\n`,
      { mode: 0o755 },
    );
    return wrapper;
  }

  /**
   * Limits what reaches the host (its downlink): a token bucket on the egress of the
   * bridge-side veth. The host's uplink (its eth0's egress) stays unlimited.
   */
  shapeDownlink(name, { rate, burst = '16kbit', latency = '300ms' }) {
    const h = this.host(name);
    tc('qdisc', 'add', 'dev', h.veth, 'root', 'tbf', 'rate', rate, 'burst', burst, 'latency', latency);
  }

  unshapeDownlink(name) {
    tc('qdisc', 'del', 'dev', this.host(name).veth, 'root');
  }

  /** The shaper's counters (sent bytes/packets, drops, overlimits), for the log. */
  shaperStats(name) {
    return tc('-s', 'qdisc', 'show', 'dev', this.host(name).veth).trim();
  }

  /**
   * Random loss on the host's downlink: drops `percent` % of the UDP packets that leave
   * the bridge through the host's veth (the kernel here has no netem qdisc; nftables'
   * `numgen random` does it, shared/notes/testing.md). A bridge-family postrouting chain
   * sees every frame the bridge sends out of that port, from the server's own address as
   * well as from other hosts, so this is that link's loss whoever sends. TCP (signalling)
   * is left alone. Two rules per host, each with a counter: all UDP to the host, and the
   * dropped share (`dropStats`). Calling it again for the same host replaces its rules.
   */
  dropDownlink(name, percent) {
    const h = this.host(name);
    if (!Number.isInteger(percent) || percent < 0 || percent > 100) throw new Error(`drop percent ${percent}: an integer 0-100`);
    if (!this.#nftMade) {
      nft('add', 'table', 'bridge', this.nftTable);
      nft('add', 'chain', 'bridge', this.nftTable, 'post', '{ type filter hook postrouting priority 0; policy accept; }');
      this.#nftMade = true;
    }
    this.undropDownlink(name);
    nft('add', 'chain', 'bridge', this.nftTable, h.ns);
    nft('add', 'rule', 'bridge', this.nftTable, h.ns, 'meta', 'l4proto', 'udp', 'counter');
    nft('add', 'rule', 'bridge', this.nftTable, h.ns, 'meta', 'l4proto', 'udp', 'numgen', 'random', 'mod', '100', '<', String(percent), 'counter', 'drop');
    nft('add', 'rule', 'bridge', this.nftTable, 'post', 'oifname', h.veth, 'jump', h.ns);
  }

  /** Ends the host's loss (its rules and counters go). */
  undropDownlink(name) {
    const h = this.host(name);
    if (!this.#nftMade) return;
    const post = JSON.parse(nft('-j', '-a', 'list', 'chain', 'bridge', this.nftTable, 'post')).nftables;
    for (const { rule } of post) {
      if (rule?.expr?.some((e) => e.jump?.target === h.ns)) {
        nft('delete', 'rule', 'bridge', this.nftTable, 'post', 'handle', String(rule.handle));
      }
    }
    try { nft('delete', 'chain', 'bridge', this.nftTable, h.ns); } catch { /* no loss on this host */ }
  }

  /**
   * Packets counted by the host's loss rules since `dropDownlink`: `udp` that reached the
   * rules (all UDP to the host), `dropped` of them. Zeros when the host has no loss.
   */
  dropStats(name) {
    const h = this.host(name);
    if (!this.#nftMade) return { udp: 0, dropped: 0 };
    let items;
    try {
      items = JSON.parse(nft('-j', 'list', 'chain', 'bridge', this.nftTable, h.ns)).nftables;
    } catch {
      return { udp: 0, dropped: 0 };
    }
    const counters = items
      .filter((i) => i.rule)
      .map(({ rule }) => ({
        packets: rule.expr.find((e) => e.counter)?.counter.packets ?? 0,
        drops: rule.expr.some((e) => 'drop' in e),
      }));
    return {
      udp: counters.find((c) => !c.drops)?.packets ?? 0,
      dropped: counters.find((c) => c.drops)?.packets ?? 0,
    };
  }

  /**
   * A Plaza server on the bridge: listening on every address of the test's namespace,
   * announcing the bridge's address as its ICE candidate. Heartbeat and resume grace are
   * forgiving: two or three browsers and the server share two cores, and a late heartbeat
   * ending a participant is not what these tests are about (a page's own 2 s silence
   * check still applies, as it would for a user).
   */
  startServer(logName) {
    return PlazaServer.start({
      logName,
      listenHost: '0.0.0.0',
      iceIp: this.serverIp,
      heartbeatTimeout: '15s',
      resumeGrace: '20s',
    });
  }

  /** Where the pages load from: the server's bridge address (a secure origin for them via the Chromium wrapper). */
  pageServer(server) {
    return { base: `http://${this.serverIp}:${server.port}` };
  }

  /** The end of a test: browsers closed, the server stopped, the hosts removed. */
  async tearDown(server, browsers) {
    for (const b of browsers) await b.close().catch(() => {});
    await server?.stop();
    this.cleanUp();
    if (server) console.log(`server log: ${server.logPath}`);
  }

  /** Deletes whatever of this net exists; safe to call more than once. */
  cleanUp() {
    live.delete(this);
    this.#remove();
  }

  #nftMade = false;

  #remove() {
    // The table lives in the test's namespace (gone with it under `unshare -n`), but a
    // run in the root namespace must not leave it behind.
    try { nft('delete', 'table', 'bridge', this.nftTable); } catch { /* not made */ }
    this.#nftMade = false;
    for (const h of Object.values(this.hosts)) {
      try { ip('netns', 'del', h.ns); } catch { /* not made */ }
      try { ip('link', 'del', h.veth); } catch { /* gone with the namespace */ }
    }
    try { ip('link', 'del', this.bridge); } catch { /* not made */ }
  }
}
