// Running a load generator in a separate process (so it is not the server's bottleneck) and
// measuring the server's CPU inside the generator's own window: the child sends 'start' when it
// begins measuring, 'stop' when it ends, then its result.
import { fork } from 'node:child_process';

export function runGenerator<R>(script: string, args: string[]): Promise<R & { serverCpu: number }> {
  return new Promise((resolve, reject) => {
    const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let cpu0 = process.cpuUsage();
    let t0 = process.hrtime.bigint();
    let serverCpu = 0; // CPU seconds per wall second while the generator measured
    child.on('message', (m) => {
      if (m === 'start') {
        cpu0 = process.cpuUsage();
        t0 = process.hrtime.bigint();
      } else if (m === 'stop') {
        const c = process.cpuUsage(cpu0);
        serverCpu = (c.user + c.system) / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9);
      } else {
        resolve({ ...(m as R), serverCpu });
      }
    });
    child.once('error', reject);
    child.once('exit', (code) => code !== 0 && reject(new Error(`load generator exited ${code}`)));
  });
}
