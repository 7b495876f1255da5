// Starts one Redis Cluster and one Sentinel set-up for the whole Jest run (the cluster and
// sentinel modes of helpers/modes.ts); global-teardown.ts stops them by pid.

import { startCluster, startSentinel } from './helpers/topology'

export default async function globalSetup(): Promise<void> {
  const [cluster, sentinel] = await Promise.all([startCluster(), startSentinel()])
  process.env.FC_CLUSTER_NODES = cluster.urls.join(',')
  process.env.FC_SENTINEL_NODES = sentinel.urls.join(',')
  ;(globalThis as { __ferrocacheTopologies?: unknown }).__ferrocacheTopologies = [cluster, sentinel]
}
