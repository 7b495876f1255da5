// Stops what global-setup.ts started (by pid).

export default async function globalTeardown(): Promise<void> {
  const started = (globalThis as { __ferrocacheTopologies?: { stop(): Promise<void> }[] }).__ferrocacheTopologies
  await Promise.all((started ?? []).map((t) => t.stop()))
}
