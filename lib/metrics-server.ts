import uWS from 'uWebSockets.js';
import type { Logger } from './log.ts';
/** What `/metrics` renders: a registry, or several (another thread's) joined. */
export interface MetricsSource {
  render(): string | Promise<string>;
}

/**
 * `/metrics` on its own listener (FAROL_METRICS_PORT, FAROL_METRICS_HOST): the counters show every
 * tenant's traffic (sites, routes, rejections), so they are never on the public port. Every
 * process kind serves it the same way: `farol start`, `collector`, `processor` and `api`.
 */

export interface MetricsServer {
  port: number;
  close(): void;
}

/** Serves `registry` as Prometheus text at `GET /metrics` on host:port (0 = any free port); all else is 404. */
export async function listenMetrics(registry: MetricsSource, host: string, port: number, log: Logger): Promise<MetricsServer> {
  const app = uWS.App();
  app.get('/metrics', (res) => {
    let aborted = false;
    res.onAborted(() => (aborted = true));
    const answer = (status: string, body: string): void => {
      if (!aborted) res.cork(() => res.writeStatus(status).writeHeader('Content-Type', 'text/plain; version=0.0.4').end(body));
    };
    Promise.resolve()
      .then(() => registry.render())
      .then(
        (body) => answer('200 OK', body),
        (err: unknown) => {
          log.error({ err }, 'metrics could not be rendered');
          answer('500 Internal Server Error', 'metrics unavailable\n');
        },
      );
  });
  app.any('/*', (res) => {
    res.onData(() => undefined);
    res.cork(() => res.writeStatus('404 Not Found').writeHeader('Content-Type', 'text/plain').end('not found\n'));
  });
  const socket = await new Promise<uWS.us_listen_socket>((resolve, reject) => {
    app.listen(host, port, (s) => (s ? resolve(s) : reject(new Error(`cannot listen for metrics on ${host}:${port} (FAROL_METRICS_HOST, FAROL_METRICS_PORT)`))));
  });
  const bound = uWS.us_socket_local_port(socket);
  log.info({ host, port: bound }, 'metrics listening');
  let open = true;
  return {
    port: bound,
    close() {
      if (!open) return;
      open = false;
      // Stops accepting; a scraper's keep-alive connection does not hold the process (cli/run.ts
      // exits shortly after its command ends).
      uWS.us_listen_socket_close(socket);
    },
  };
}

/**
 * The metrics listener the configuration asks for, or none (FAROL_METRICS_PORT unset). The caller
 * closes it when the process stops.
 */
export async function configuredMetrics(
  config: { FAROL_METRICS_PORT?: number | undefined; FAROL_METRICS_HOST: string },
  registry: MetricsSource,
  log: Logger,
): Promise<MetricsServer | undefined> {
  if (config.FAROL_METRICS_PORT === undefined) return undefined;
  return listenMetrics(registry, config.FAROL_METRICS_HOST, config.FAROL_METRICS_PORT, log);
}
