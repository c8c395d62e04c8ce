import { unstable_startWorker } from "wrangler";
const [config, envFile, persist] = process.argv.slice(2);
const worker = await unstable_startWorker({
  config,
  envFiles: [envFile],
  dev: {
    server: { hostname: "127.0.0.1", port: 0 },
    inspector: false,
    persist,
    watch: false,
    logLevel: "info",
  },
});
await worker.ready;
console.log(`Ready on ${(await worker.url).origin}`);
process.on("SIGTERM", () => worker.dispose().finally(() => process.exit(0)));
