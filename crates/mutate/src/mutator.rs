//! The input mutator: a splitmix64 stream choosing one to four edits per
//! input from a valid seed input.

/// Values that break size fields and counters: zero, one, signed and
/// unsigned extremes, and powers of two around them.
const INTERESTING: &[u32] =
    &[0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x1_0000, 0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff];

/// Tokens spliced into every input (text formats break on them; binary
/// ones see them as noise).
const COMMON_TOKENS: &[&str] =
    &["\n", ",", "\"", "=", " ", "-1", "0", "1e309", "NaN", "-0", "99999999999999999999", "\u{feff}", "\r\n", "\0"];

/// Derives mutated inputs from valid ones, deterministically from a seed.
pub struct Mutator {
    state: u64,
    tokens: Vec<Vec<u8>>,
}

impl Mutator {
    /// A mutator with its seed and extra syntax tokens to splice in.
    pub fn new(seed: u64, extra_tokens: Vec<Vec<u8>>) -> Self {
        let mut tokens: Vec<Vec<u8>> = COMMON_TOKENS.iter().map(|t| t.as_bytes().to_vec()).collect();
        tokens.extend(extra_tokens);
        Mutator { state: seed, tokens }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A position in `0..=len`.
    fn pos(&mut self, len: usize) -> usize {
        self.below(len + 1)
    }

    /// One to four edits of `seed`.
    pub fn mutate(&mut self, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        let edits = 1 + self.below(4);
        for _ in 0..edits {
            self.edit(&mut v);
        }
        v
    }

    fn edit(&mut self, v: &mut Vec<u8>) {
        if v.is_empty() {
            let t = self.below(self.tokens.len());
            v.extend_from_slice(&self.tokens[t].clone());
            return;
        }
        match self.below(9) {
            0 => {
                let i = self.below(v.len());
                v[i] ^= 1 << self.below(8);
            }
            1 => {
                let i = self.below(v.len());
                v[i] = self.next() as u8;
            }
            2 => self.write_interesting(v),
            3 => {
                let cut = self.pos(v.len());
                v.truncate(cut);
            }
            4 => {
                let i = self.below(v.len());
                let n = 1 + self.below(16.min(v.len() - i));
                v.drain(i..i + n);
            }
            5 => {
                let i = self.pos(v.len());
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            6 => {
                let i = self.below(v.len());
                let n = 1 + self.below(64.min(v.len() - i));
                let chunk = v[i..i + n].to_vec();
                let at = self.pos(v.len());
                v.splice(at..at, chunk);
            }
            _ => {
                let t = self.below(self.tokens.len());
                let tok = self.tokens[t].clone();
                let at = self.pos(v.len());
                if self.below(2) == 0 {
                    v.splice(at..at, tok);
                } else {
                    let end = (at + tok.len()).min(v.len());
                    v.splice(at..end, tok);
                }
            }
        }
    }

    /// An interesting integer over 1, 2 or 4 bytes, little or big endian.
    fn write_interesting(&mut self, v: &mut [u8]) {
        let x = INTERESTING[self.below(INTERESTING.len())];
        let width = [1usize, 2, 4][self.below(3)].min(v.len());
        let at = self.below(v.len() - width + 1);
        let bytes = if self.below(2) == 0 { x.to_le_bytes() } else { x.to_be_bytes() };
        let src = if self.below(2) == 0 { &bytes[..width] } else { &bytes[4 - width..] };
        v[at..at + width].copy_from_slice(src);
    }
}
