//! CRC-64/XZ (the `x-oss-hash-crc64ecma` checksum): streaming update and combine.
//!
//! Owns: the checksum arithmetic. Must not: know where the bytes come from.
//!
//! Parameters: reflected polynomial `0xC96C5795D7870F42` (ECMA-182), init and xorout all ones.
//! `update(0, b"123456789") == 0x995DC9BBDF1939FA`. Feeding a previous result back in as
//! `crc` continues the checksum over the concatenation, which is how a part is checksummed
//! while it streams through the shell's buffer.

const POLY: u64 = 0xC96C_5795_D787_0F42;

/// A running CRC-64/XZ over bytes fed in pieces: the form the hot loops use (every uploaded byte
/// passes through one of these), so they pay no [`combine`] per chunk.
///
/// The arithmetic is the `crc64fast` crate's: carry-less multiplication (PCLMULQDQ on x86_64,
/// PMULL on aarch64 with the crypto extension), chosen at run time, with a 16-bytes-at-a-time
/// table fallback for CPUs without it (Cortex-A53/A72 boards such as the Pi 3 and 4). The crate
/// is built at `opt-level = 3` even in size-tuned release builds (see Cargo.toml).
#[derive(Clone)]
pub struct Hasher(crc64fast::Digest);

impl Hasher {
    /// A fresh checksum (of no bytes: 0).
    pub fn new() -> Hasher {
        Hasher(crc64fast::Digest::new())
    }

    /// Feeds `data`.
    pub fn write(&mut self, data: &[u8]) {
        self.0.write(data);
    }

    /// The checksum of everything fed so far (the hasher can go on being fed).
    pub fn sum(&self) -> u64 {
        self.0.sum64()
    }
}

impl Default for Hasher {
    fn default() -> Hasher {
        Hasher::new()
    }
}

/// Continues the CRC-64/XZ `crc` (0 for a fresh checksum) over `data`.
///
/// Continuing a non-zero `crc` costs a [`combine`] (a few thousand bit operations); loops over
/// many chunks use [`Hasher`] instead.
pub fn update(crc: u64, data: &[u8]) -> u64 {
    let mut h = Hasher::new();
    h.write(data);
    if crc == 0 {
        h.sum()
    } else {
        combine(crc, h.sum(), data.len() as u64)
    }
}

/// The plain bit-at-a-time definition, for tests of the fast path.
#[cfg(test)]
fn reference(data: &[u8]) -> u64 {
    let mut c = !0u64;
    for &b in data {
        c ^= u64::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
        }
    }
    !c
}

/// Multiplies two polynomials modulo the CRC polynomial (reflected GF(2) arithmetic).
fn gf2_mul(mut a: u64, mut b: u64) -> u64 {
    let mut p = 0u64;
    while b != 0 {
        if b & (1 << 63) != 0 {
            p ^= a;
        }
        b <<= 1;
        a = if a & 1 != 0 { (a >> 1) ^ POLY } else { a >> 1 };
    }
    p
}

/// `x^(8 * len)` modulo the polynomial, by square-and-multiply: the operator that shifts a
/// CRC register past `len` zero bytes.
fn x_pow_8n(mut len: u64) -> u64 {
    // In the reflected representation, the polynomial "1" is the top bit.
    let mut result = 1u64 << 63;
    // x^8 in reflected form.
    let mut sq = 1u64 << (63 - 8);
    while len != 0 {
        if len & 1 != 0 {
            result = gf2_mul(result, sq);
        }
        sq = gf2_mul(sq, sq);
        len >>= 1;
    }
    result
}

/// CRC of `A ‖ B` from `crc_a = crc(A)`, `crc_b = crc(B)` and `len_b = len(B)`, without the bytes.
/// Used to check the whole object against the server after parts were sent (or resumed) separately.
pub fn combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    if len_b == 0 {
        return crc_a;
    }
    gf2_mul(crc_a, x_pow_8n(len_b)) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_values() {
        assert_eq!(update(0, b"123456789"), 0x995D_C9BB_DF19_39FA);
        assert_eq!(update(0, b"123456789").to_string(), "11051210869376104954");
        assert_eq!(
            update(0, b"This is a test of the emergency broadcast system."),
            0x27DB_187F_C15B_BC72
        );
        assert_eq!(update(0, b""), 0);
    }

    #[test]
    fn continuation_and_combine_match_concatenation() {
        let a = b"123456789";
        let b = b"This is a test of the emergency broadcast system.";
        let mut ab = a.to_vec();
        ab.extend_from_slice(b);
        let whole = update(0, &ab);
        assert_eq!(whole, 0x6A7A_A19F_CBF4_8688);
        assert_eq!(update(update(0, a), b), whole);
        assert_eq!(combine(update(0, a), update(0, b), b.len() as u64), whole);
        assert_eq!(combine(whole, 0, 0), whole);
    }

    #[test]
    fn fast_path_matches_the_definition_at_every_length_and_alignment() {
        // Long enough for the SIMD path (it folds 128-byte blocks), at every misalignment.
        let data: Vec<u8> = (0..3000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..17 {
            for len in [
                0,
                1,
                7,
                15,
                16,
                17,
                127,
                128,
                129,
                255,
                256,
                257,
                1000,
                2983 - start,
            ] {
                let d = &data[start..start + len];
                assert_eq!(update(0, d), reference(d), "start {start} len {len}");
                let mut h = Hasher::new();
                let (x, y) = d.split_at(len / 3);
                h.write(x);
                h.write(y);
                assert_eq!(
                    h.sum(),
                    reference(d),
                    "start {start} len {len} (two writes)"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn split_anywhere(data in proptest::collection::vec(proptest::num::u8::ANY, 0..300), cut in 0usize..300) {
            let cut = cut.min(data.len());
            let (x, y) = data.split_at(cut);
            let whole = update(0, &data);
            proptest::prop_assert_eq!(update(update(0, x), y), whole);
            proptest::prop_assert_eq!(combine(update(0, x), update(0, y), y.len() as u64), whole);
        }
    }
}
