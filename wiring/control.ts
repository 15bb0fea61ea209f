import type { ControlPlane } from '../control/control-plane.ts';
import type { Logger } from '../lib/log.ts';
import type { Config } from '../schemas/config.ts';

/**
 * Completes the bootstrap (account, `localhost`, owner, first owner token; FAROL_SITES registered)
 * and prints a newly issued random owner token once, as a JSON log line and a plain line. A token
 * from FAROL_BOOTSTRAP_TOKEN is not printed: the operator has it.
 */
export async function bootstrapControl(
  control: ControlPlane,
  config: Config,
  log: Logger,
  write: (text: string) => void = (t) => process.stdout.write(t),
): Promise<void> {
  const sites = (config.FAROL_SITES ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  const result = await control.bootstrap({
    token: config.FAROL_BOOTSTRAP_TOKEN,
    sites,
    announce: (token, prefix) => {
      if (config.FAROL_BOOTSTRAP_TOKEN !== undefined) return;
      // Written whatever the log level: it is the only way in, and it is never shown again.
      write(`${JSON.stringify({ level: 'info', time: new Date().toISOString(), msg: 'bootstrap owner token (shown once)', token, prefix })}\n`);
      write(`\nFarol owner API token (shown once, store it now): ${token}\n  use it as: Authorization: Bearer ${token}\n\n`);
    },
  });
  if (result.issued?.fromEnv) log.info({ prefix: result.issued.prefix }, 'bootstrap owner token set from FAROL_BOOTSTRAP_TOKEN');
  if (result.sitesAdded.length > 0) log.info({ sites: result.sitesAdded, account: result.accountId }, 'sites registered');
}
