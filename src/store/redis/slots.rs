//! Redis Cluster slots: which slot a key hashes to, and which master serves each slot (from
//! `CLUSTER NODES`), so that the calls of one batch can go to each master as one pipeline.
//! A stale table only costs speed: a master answers `MOVED`/`ASK` for a key it does not
//! serve, and that call is then sent on its own through the client's routing.

/// Slots of a Redis Cluster.
pub const SLOTS: usize = 16384;

/// CRC16-XMODEM (polynomial 0x1021), as Redis hashes keys to slots.
const CRC16: [u16; 256] = {
  let mut table = [0u16; 256];
  let mut i = 0;
  while i < 256 {
    let mut crc = (i as u16) << 8;
    let mut bit = 0;
    while bit < 8 {
      crc = if crc & 0x8000 != 0 {
        (crc << 1) ^ 0x1021
      } else {
        crc << 1
      };
      bit += 1;
    }
    table[i] = crc;
    i += 1;
  }
  table
};

/// The slot of `key`: the CRC16 of its hash tag (the text between the first `{` and the
/// next `}`, when not empty), else of the whole key, modulo 16384.
pub fn key_slot(key: &[u8]) -> u16 {
  let hashed = key
    .iter()
    .position(|&b| b == b'{')
    .and_then(|open| {
      let rest = &key[open + 1..];
      let close = rest.iter().position(|&b| b == b'}')?;
      (close > 0).then(|| &rest[..close])
    })
    .unwrap_or(key);
  let crc = hashed
    .iter()
    .fold(0u16, |crc, &b| (crc << 8) ^ CRC16[usize::from((crc >> 8) as u8 ^ b)]);
  crc % SLOTS as u16
}

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTable {
  /// The masters serving slots, as `(host, port)`.
  pub masters: Vec<(String, u16)>,
  /// Per slot, the index of its master in `masters` (`u16::MAX`: not served).
  owner: Vec<u16>,
}

impl SlotTable {
  /// The table of masters and their slot ranges (`"0-5460"`, `"5461"`; migration markers in
  /// brackets are left out: such a slot is still served by the master listing its range).
  pub fn new(masters: Vec<((String, u16), Vec<String>)>) -> Self {
    let mut owner = vec![u16::MAX; SLOTS];
    for (index, (_, ranges)) in masters.iter().enumerate() {
      for range in ranges.iter().filter(|r| !r.starts_with('[')) {
        let (from, to) = range.split_once('-').unwrap_or((range, range));
        if let (Ok(from), Ok(to)) = (from.parse::<usize>(), to.parse::<usize>()) {
          for slot in owner.iter_mut().take(to.min(SLOTS - 1) + 1).skip(from) {
            *slot = index as u16;
          }
        }
      }
    }
    SlotTable {
      masters: masters.into_iter().map(|(address, _)| address).collect(),
      owner,
    }
  }

  /// The index in `masters` of the master serving `key`'s slot, if any.
  pub fn master_of(&self, key: &[u8]) -> Option<usize> {
    let index = self.owner[usize::from(key_slot(key))];
    (index != u16::MAX).then_some(usize::from(index))
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn slots_are_the_ones_redis_computes() {
    // the CRC16-XMODEM check value, and `CLUSTER KEYSLOT` answers of Redis 7
    assert_eq!(key_slot(b"123456789"), 0x31C3);
    assert_eq!(key_slot(b"foo"), 12182);
    assert_eq!(key_slot(b"bar"), 5061);
    assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
    assert_eq!(
      key_slot(b"foo{}{bar}"),
      key_slot(b"foo{}{bar}"),
      "an empty tag hashes the whole key"
    );
    assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
    assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
  }

  #[test]
  fn the_table_maps_ranges_and_skips_migration_markers() {
    let node = |port: u16| ("127.0.0.1".to_string(), port);
    let table = SlotTable::new(vec![
      (node(1), vec!["0-5460".into(), "[5461->-abc]".into()]),
      (node(2), vec!["5461-10922".into()]),
      (node(3), vec!["10923-16382".into()]),
    ]);
    assert_eq!(table.master_of(b"bar"), Some(0)); // slot 5061
    assert_eq!(table.master_of(b"foo"), Some(2)); // slot 12182
    assert_eq!(table.owner[5461], 1);
    assert_eq!(table.owner[16383], u16::MAX, "a slot no master serves");
    assert_eq!(table.masters[1], node(2));
  }
}
