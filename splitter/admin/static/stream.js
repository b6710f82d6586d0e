// The live stream (GET /api/v1/stream, server-sent events), kept open: EventSource
// reconnects by itself after a network error; after an HTTP error (it gives up) or a
// silent stall, this module opens a new one, backing off up to 15 s.

export const KINDS = ["stats", "series", "weights", "event", "rollout", "shadow"];

const STALL_MS = 5000; // `stats` comes every second: this long without a message is a stall

export class Stream {
  /**
   * @param {string} url
   * @param {{onMessage: (kind: string, data: any) => void,
   *          onState: (state: string, since: Date|null) => void,
   *          onFailed: () => void}} handlers
   * States: "connecting" (first time), "live", "reconnecting".
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.source = null;
    this.state = "stopped";
    this.lastMessage = 0;
    this.failures = 0;
    this.downSince = null;
    this.everLive = false;
    this.retryTimer = null;
    this.watchdog = null;
  }

  start() {
    this.stop();
    this.stopped = false;
    this.open();
    this.watchdog = setInterval(() => this.check(), 1000);
  }

  stop() {
    this.stopped = true;
    clearInterval(this.watchdog);
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
    this.source = null;
    this.state = "stopped";
  }

  setState(state) {
    if (state !== "live" && this.downSince === null && this.everLive) this.downSince = new Date();
    if (state === "live") this.downSince = null;
    if (state === this.state) return;
    this.state = state;
    this.handlers.onState(state, this.downSince);
  }

  open() {
    const source = new EventSource(this.url);
    this.source = source;
    this.lastMessage = Date.now();
    this.setState(this.everLive ? "reconnecting" : "connecting");
    source.onopen = () => {
      if (this.source !== source) return;
      this.lastMessage = Date.now();
      this.failures = 0;
      this.everLive = true;
      this.setState("live");
    };
    for (const kind of KINDS) {
      source.addEventListener(kind, (event) => {
        if (this.source !== source) return;
        this.lastMessage = Date.now();
        let data;
        try {
          data = JSON.parse(event.data);
        } catch {
          return;
        }
        this.handlers.onMessage(kind, data);
      });
    }
    source.onerror = () => {
      if (this.source !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        // An HTTP error (401 after a restart, 5xx): EventSource gives up; we do not.
        this.source = null;
        this.everLive = this.everLive || this.state === "live";
        this.setState("reconnecting");
        this.failures += 1;
        this.handlers.onFailed();
        this.retryLater();
      } else {
        this.setState("reconnecting");
      }
    };
  }

  retryLater() {
    clearTimeout(this.retryTimer);
    const delay = Math.min(1000 * 2 ** Math.min(this.failures, 4), 15000);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  check() {
    if (this.stopped || !this.source) return;
    const quiet = Date.now() - this.lastMessage;
    if ((this.state === "live" && quiet > STALL_MS) || (this.state !== "live" && quiet > 20000)) {
      this.source.close();
      this.source = null;
      this.setState("reconnecting");
      this.open();
    }
  }
}
