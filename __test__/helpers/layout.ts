// Where ferrocache puts a query result in Redis (README "Key layout"), for tests that look
// at raw keys. One server or Sentinel: `<prefix>[t:<len>:<tenant>:]q:<key>`, listed in the
// scope's `i:q` and `x:q` sorted sets. A Redis Cluster adds a hash tag per bucket so that an
// entry and the index sets listing it share a slot: `<scope>q:{<fnv1a64(scope)>.<bucket>}<key>`,
// `<scope>i:q{…}`, `<scope>x:q{…}` (src/keys.rs, KeyLayout::cluster_query_index).

const BUCKETS = 16n
const MASK = (1n << 64n) - 1n

/** 64-bit FNV-1a of the UTF-8 bytes of `text`. */
function fnv1a(text: string): bigint {
  let h = 0xcbf29ce484222325n
  for (const b of Buffer.from(text, 'utf8')) h = ((h ^ BigInt(b)) * 0x100000001b3n) & MASK
  return h
}

/** The scope part of a key: the prefix, and a tenant's `t:<byte length>:<id>:`. */
export function scopeOf(prefix: string, tenant?: string): string {
  return tenant === undefined ? prefix : `${prefix}t:${Buffer.byteLength(tenant)}:${tenant}:`
}

/** The hash tag of `key`'s bucket in `scope` on a Cluster. */
function tagOf(scope: string, key: string): string {
  return `{${fnv1a(scope).toString(16).padStart(16, '0')}.${(fnv1a(key) % BUCKETS).toString(16)}}`
}

/** The Redis names of query result `key` and of the two index sets listing it. */
export function queryNames(
  prefix: string,
  key: string,
  { tenant, cluster }: { tenant?: string; cluster: boolean },
): { entry: string; lex: string; expiry: string } {
  const scope = scopeOf(prefix, tenant)
  const tag = cluster ? tagOf(scope, key) : ''
  return { entry: `${scope}q:${tag}${key}`, lex: `${scope}i:q${tag}`, expiry: `${scope}x:q${tag}` }
}

/** A raw Redis name without a Cluster bucket tag (index sets of every bucket read alike). */
export function untagged(name: string): string {
  return name.replace(/([ix]:q|q:)\{[0-9a-f]{16}\.[0-9a-f]\}/, '$1')
}
