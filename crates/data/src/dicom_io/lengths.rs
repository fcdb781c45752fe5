//! A walk over a DICOM file's element headers before it is parsed, so that
//! a length field larger than the rest of the file is an error instead of
//! an allocation of that size (`dicom-object` allocates a value's declared
//! length before reading it: a corrupt 1 kB file could ask for gigabytes).
//!
//! The walk reads each header (tag, VR where explicit, length): a defined
//! length must fit in the bytes that remain; sequences (of defined or
//! undefined length; in implicit VR, a value that starts with an item) and
//! items are stepped into (their contents are elements too), except the
//! fragments of encapsulated pixel data, which are skipped whole. It does
//! not interpret values: what else is wrong with the file is left to the
//! parser. Not handled: an explicit-VR element of VR UN and undefined
//! length, whose contents the standard encodes in implicit VR (dicom-rs
//! 0.10 reads them as explicit too).

/// VRs whose explicit-VR header has two reserved bytes and a 32-bit length
/// (and any VR the parser does not know, which it reads as UN).
const LONG_VRS: [&[u8; 2]; 13] = [b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"];
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI",
    b"UL", b"US",
];
const UNDEFINED: u32 = u32::MAX;
const PIXEL_DATA: (u16, u16) = (0x7fe0, 0x0010);
const ITEM_GROUP: u16 = 0xfffe;
const ITEM: u16 = 0xe000;
const SEQUENCE_END: u16 = 0xe0dd;

/// One element header: tag, value length, header size, and whether its VR
/// is SQ (explicit VR only; in implicit VR a sequence is told by its value
/// starting with an item).
struct Header {
    tag: (u16, u16),
    len: u32,
    size: usize,
    sq: bool,
}

/// How the data set is encoded: explicit or implicit VR, byte order.
#[derive(Clone, Copy)]
pub(super) struct Encoding {
    pub explicit: bool,
    pub big_endian: bool,
}

impl Encoding {
    /// The file meta group's encoding (and that of the little-endian explicit syntaxes).
    pub const EXPLICIT_LE: Encoding = Encoding { explicit: true, big_endian: false };

    fn u16_at(self, b: &[u8], i: usize) -> u16 {
        let x = [b[i], b[i + 1]];
        if self.big_endian {
            u16::from_be_bytes(x)
        } else {
            u16::from_le_bytes(x)
        }
    }

    fn u32_at(self, b: &[u8], i: usize) -> u32 {
        let x = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if self.big_endian {
            u32::from_be_bytes(x)
        } else {
            u32::from_le_bytes(x)
        }
    }
}

/// The header at `pos`, or `None` when fewer bytes than a header remain.
fn header(b: &[u8], pos: usize, enc: Encoding) -> Option<Header> {
    let (explicit, u16_at, u32_at) = (enc.explicit, |b, i| enc.u16_at(b, i), |b, i| enc.u32_at(b, i));
    let rest = &b[pos..];
    if rest.len() < 8 {
        return None;
    }
    let tag = (u16_at(rest, 0), u16_at(rest, 2));
    if tag.0 == ITEM_GROUP || !explicit {
        let sq = !explicit && rest.len() >= 12 && u16_at(rest, 8) == ITEM_GROUP && u16_at(rest, 10) == ITEM;
        return Some(Header { tag, len: u32_at(rest, 4), size: 8, sq: sq && tag.0 != ITEM_GROUP });
    }
    let vr: &[u8; 2] = rest[4..6].try_into().expect("two bytes");
    if SHORT_VRS.contains(&vr) && !LONG_VRS.contains(&vr) {
        return Some(Header { tag, len: u16_at(rest, 6) as u32, size: 8, sq: false });
    }
    (rest.len() >= 12).then(|| Header { tag, len: u32_at(rest, 8), size: 12, sq: vr == b"SQ" })
}

/// Walks the elements from `start`; with `meta_only`, only the file meta
/// group (group 0002, always explicit VR) and returns where it ends.
/// Otherwise walks to the end of `b` and returns its length.
pub(super) fn check(b: &[u8], start: usize, enc: Encoding, meta_only: bool) -> Result<usize, String> {
    let mut pos = start;
    let mut in_fragments = false;
    while let Some(h) = header(b, pos, enc) {
        if meta_only && h.tag.0 != 0x0002 {
            return Ok(pos);
        }
        let body = pos + h.size;
        let remain = b.len() - body;
        if h.len != UNDEFINED && h.len as usize > remain {
            return Err(format!(
                "file truncated or corrupt: element ({:04X},{:04X}) at byte {pos} declares {} bytes, but only {remain} remain",
                h.tag.0, h.tag.1, h.len
            ));
        }
        let is_item = h.tag.0 == ITEM_GROUP;
        if h.tag == PIXEL_DATA && h.len == UNDEFINED {
            in_fragments = true;
        } else if is_item && h.tag.1 == SEQUENCE_END {
            in_fragments = false;
        }
        // Step into sequences (of any length) and items; skip values and
        // pixel fragments.
        let step_in = h.len == UNDEFINED || h.sq || (is_item && !in_fragments);
        pos = if step_in { body } else { body + h.len as usize };
    }
    Ok(if meta_only { pos } else { b.len() })
}

#[cfg(test)]
mod tests {
    use super::super::tests::{expect_err, read};
    use super::super::{DicomOptions, TestDicom};
    use super::*;

    #[test]
    fn valid_files_walk_to_the_end() {
        let px: Vec<u16> = (0..40).collect();
        for rle in [false, true] {
            let bytes = TestDicom { rle, ..TestDicom::new(5, 8, &px, "MONOCHROME2") }.to_bytes().unwrap();
            let meta_end = check(&bytes, 132, Encoding::EXPLICIT_LE, true).unwrap();
            assert!(meta_end > 132 && meta_end < bytes.len());
            assert_eq!(Encoding::EXPLICIT_LE.u16_at(&bytes, meta_end), 0x0008, "the data set starts after the meta group");
            assert_eq!(check(&bytes, meta_end, Encoding::EXPLICIT_LE, false), Ok(bytes.len()));
            read(&bytes, &DicomOptions::default()).unwrap();
        }
    }

    /// Hand-made data sets: a sequence of defined length holding an item
    /// whose element claims more than the file, in explicit and implicit VR.
    #[test]
    fn lengths_inside_a_sequence_of_defined_length_are_checked() {
        let el = |g: u16, e: u16, vr: &[u8], len: u32, explicit: bool| -> Vec<u8> {
            let mut v = [g.to_le_bytes(), e.to_le_bytes()].concat();
            if explicit {
                v.extend_from_slice(vr);
                v.extend_from_slice(&[0, 0]);
            }
            v.extend_from_slice(&len.to_le_bytes());
            v
        };
        for explicit in [true, false] {
            // (0009,1001) OB claiming 2^31 bytes, inside an item inside (0008,1140) SQ.
            let inner = el(0x0009, 0x1001, b"OB", 0x8000_0000, explicit);
            let mut item = el(ITEM_GROUP, ITEM, b"", inner.len() as u32, false);
            item.extend_from_slice(&inner);
            let mut set = el(0x0008, 0x1140, b"SQ", item.len() as u32, explicit);
            set.extend_from_slice(&item);
            let e = check(&set, 0, Encoding { explicit, big_endian: false }, false).unwrap_err();
            assert!(e.contains("(0009,1001)") && e.contains("declares 2147483648 bytes"), "{e}");
            // The same sequence holding a short valid element walks to the end.
            let inner = [el(0x0009, 0x1001, b"OB", 2, explicit), vec![1, 2]].concat();
            let mut item = el(ITEM_GROUP, ITEM, b"", inner.len() as u32, false);
            item.extend_from_slice(&inner);
            let mut set = el(0x0008, 0x1140, b"SQ", item.len() as u32, explicit);
            set.extend_from_slice(&item);
            assert_eq!(check(&set, 0, Encoding { explicit, big_endian: false }, false), Ok(set.len()));
        }
    }

    #[test]
    fn a_length_beyond_the_file_is_refused_before_parsing() {
        let px: Vec<u16> = (0..40).collect();
        let mut bytes = TestDicom { rle: true, ..TestDicom::new(5, 8, &px, "MONOCHROME2") }.to_bytes().unwrap();
        // The first fragment item after the (empty) offset table: length 2^31.
        let at = bytes.windows(8).rposition(|w| w[..4] == [0xfe, 0xff, 0x00, 0xe0] && w[4..] != [0; 4]).unwrap();
        bytes[at + 4..at + 8].copy_from_slice(&0x8000_0000u32.to_le_bytes());
        expect_err(&bytes, &["truncated or corrupt", "(FFFE,E000)", "declares 2147483648 bytes"]);
    }
}
