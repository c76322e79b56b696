/**
 * The process edge of the command lines (`agent`, `fleetctl`), beside their configuration: a
 * command line is `main(argv, env, io)`, which validates its environment with this lib, returns an
 * exit code and never throws. Here rather than in libs/observability, whose index loads NestJS:
 * `agent put` must start fast.
 */
/**
 * Runs `main` and exits with the code it returns. A stray handle must not keep a finished command alive
 * (seen after SIGTERM of `agent run`: a MessagePort, not ours, held the loop open): the exit is
 * forced 200 ms later, unref'd, so it happens at once when nothing is left.
 */
/** Where a command line writes: its output lines and its error lines (tests capture them). */
export interface CommandLineIo {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
}

export function runCommandLine(main: (argv: readonly string[], env: NodeJS.ProcessEnv, io: CommandLineIo) => Promise<number>): void {
  const exit = (code: number): void => {
    process.exitCode = code;
    setTimeout(() => process.exit(code), 200).unref();
  };
  main(process.argv.slice(2), process.env, { out: (l) => console.log(l), err: (l) => console.error(l) }).then(exit, () => exit(70));
}

