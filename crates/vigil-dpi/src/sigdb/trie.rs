//! Longest-prefix match over address ranges: a binary trie per family (32 or 128 levels deep),
//! built once at load. A lookup walks at most one node per address bit and remembers the last
//! (longest) prefix that carried an application.

/// Marks a trie node that ends no prefix.
const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie {
    /// Children (0 and 1 bit) of each node; 0 means "no child" (the root is never a child).
    children: Vec<[u32; 2]>,
    /// Value of the prefix ending at each node, or `NONE`.
    values: Vec<u32>,
    /// Address width in bits (32 or 128).
    width: u8,
}

impl PrefixTrie {
    pub(crate) fn new(width: u8) -> Self {
        PrefixTrie { children: vec![[0, 0]], values: vec![NONE], width }
    }

    /// `bits` is the address left-aligned in its low `width` bits (an IPv4 address as u32 in u128).
    /// A later insert of the same prefix replaces the earlier value.
    pub(crate) fn insert(&mut self, bits: u128, len: u8, value: u32) {
        let mut node = 0usize;
        for i in 0..len {
            let bit = ((bits >> (self.width - 1 - i)) & 1) as usize;
            let next = self.children[node][bit];
            node = if next == 0 {
                self.children.push([0, 0]);
                self.values.push(NONE);
                let id = self.children.len() - 1;
                self.children[node][bit] = id as u32;
                id
            } else {
                next as usize
            };
        }
        self.values[node] = value;
    }

    /// The value of the longest stored prefix containing `bits`, and that prefix's length.
    pub(crate) fn lookup(&self, bits: u128) -> Option<(u32, u8)> {
        let mut node = 0usize;
        let mut best = (self.values[0] != NONE).then_some((self.values[0], 0));
        for i in 0..self.width {
            let bit = ((bits >> (self.width - 1 - i)) & 1) as usize;
            let next = self.children[node][bit];
            if next == 0 {
                break;
            }
            node = next as usize;
            if self.values[node] != NONE {
                best = Some((self.values[node], i + 1));
            }
        }
        best
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.children.len() == 1 && self.values[0] == NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let mut t = PrefixTrie::new(32);
        t.insert(0x0a00_0000, 8, 1); // 10.0.0.0/8
        t.insert(0x0a01_0000, 16, 2); // 10.1.0.0/16
        assert_eq!(t.lookup(0x0a01_0203), Some((2, 16)));
        assert_eq!(t.lookup(0x0a02_0203), Some((1, 8)));
        assert_eq!(t.lookup(0x0b00_0000), None);
        t.insert(0, 0, 7);
        assert_eq!(t.lookup(0x0b00_0000), Some((7, 0)));
    }
}
