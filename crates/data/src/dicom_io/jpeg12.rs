//! 12-bit JPEG (ITU T.81 sequential DCT with Huffman coding, processes 2
//! and 4: DICOM's JPEG Extended, 1.2.840.10008.1.2.4.51), which
//! `jpeg-decoder` refuses. One component (monochrome), any restart
//! interval; the inverse DCT is computed exactly (f64 cosines) and rounded,
//! so it may differ from an integer IDCT such as libjpeg's by one unit,
//! within what ISO 10918-2 allows a decoder.

/// Zig-zag position k -> natural (row-major) index.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56,
    57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// The sample precision of a JPEG stream's frame header (SOF0/SOF1), if it has one.
pub(super) fn precision(data: &[u8]) -> Option<u8> {
    let mut pos = 2;
    while pos + 4 < data.len() && data[pos] == 0xFF {
        let marker = data[pos + 1];
        if matches!(marker, 0xC0 | 0xC1) {
            return data.get(pos + 4).copied();
        }
        pos += 2 + u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
    }
    None
}

/// A Huffman table (T.81 F.2.2.3): for each code length, the largest code
/// and the index of its first symbol.
#[derive(Clone, Default)]
struct Huffman {
    maxcode: [i32; 17],
    valptr: [i32; 17],
    mincode: [i32; 17],
    values: Vec<u8>,
}

impl Huffman {
    fn new(counts: &[u8; 16], values: Vec<u8>) -> Result<Huffman, String> {
        let mut h = Huffman { values, ..Default::default() };
        let (mut code, mut k) = (0i32, 0i32);
        for len in 1..=16 {
            let n = counts[len - 1] as i32;
            h.valptr[len] = k;
            h.mincode[len] = code;
            code += n;
            k += n;
            h.maxcode[len] = if n > 0 { code - 1 } else { -1 };
            if code > (1 << len) {
                return Err("a Huffman table with more codes than its lengths allow".into());
            }
            code <<= 1;
        }
        if k as usize != h.values.len() {
            return Err("a Huffman table whose counts and values disagree".into());
        }
        Ok(h)
    }
}

/// Entropy-coded bits, with 0xFF00 unstuffed; a marker ends the bits (zeros follow).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    acc: u32,
    n: u32,
}

impl Bits<'_> {
    fn fill(&mut self) {
        while self.n <= 24 {
            let mut byte = 0u32;
            if self.pos < self.data.len() && self.data[self.pos] != 0xFF {
                byte = self.data[self.pos] as u32;
                self.pos += 1;
            } else if self.pos + 1 < self.data.len() && self.data[self.pos + 1] == 0x00 {
                byte = 0xFF;
                self.pos += 2;
            }
            self.acc |= byte << (24 - self.n);
            self.n += 8;
        }
    }

    fn bits(&mut self, k: u32) -> u32 {
        if k == 0 {
            return 0;
        }
        self.fill();
        let v = self.acc >> (32 - k);
        self.acc <<= k;
        self.n -= k;
        v
    }

    fn decode(&mut self, h: &Huffman) -> Result<u8, String> {
        let mut code = 0i32;
        for len in 1..=16 {
            code = (code << 1) | self.bits(1) as i32;
            if code <= h.maxcode[len] {
                let i = (h.valptr[len] + code - h.mincode[len]) as usize;
                return h.values.get(i).copied().ok_or_else(|| "a Huffman code beyond its table".to_string());
            }
        }
        Err("corrupt entropy-coded data (no Huffman code matches)".into())
    }

    /// A `s`-bit magnitude, sign-extended (T.81 F.2.2.1 EXTEND).
    fn receive_extend(&mut self, s: u8) -> i32 {
        let v = self.bits(s as u32) as i32;
        if s > 0 && v < 1 << (s - 1) {
            v - (1 << s) + 1
        } else {
            v
        }
    }

    /// At a restart: skips to after the next RSTn marker and clears the bits.
    fn restart(&mut self) {
        while self.pos + 1 < self.data.len() && !(self.data[self.pos] == 0xFF && (0xD0..=0xD7).contains(&self.data[self.pos + 1])) {
            self.pos += 1;
        }
        self.pos = (self.pos + 2).min(self.data.len());
        (self.acc, self.n) = (0, 0);
    }
}

/// Tables and frame parameters read from the markers before the scan.
#[derive(Default)]
struct Headers {
    quant: [Option<[u16; 64]>; 4],
    dc: [Option<Huffman>; 4],
    ac: [Option<Huffman>; 4],
    restart: usize,
    /// (precision, rows, cols, quantisation table).
    frame: Option<(u8, usize, usize, usize)>,
}

/// Decodes a one-component 12-bit (or 8-bit) sequential Huffman JPEG stream
/// into row-major samples.
pub(super) fn decode(data: &[u8], rows: usize, cols: usize) -> Result<Vec<u16>, String> {
    let mut h = Headers::default();
    let mut pos = 2;
    if !data.starts_with(&[0xFF, 0xD8]) {
        return Err("JPEG data does not start with SOI".into());
    }
    loop {
        let (marker, seg) = segment(data, pos)?;
        pos += 4 + seg.len();
        match marker {
            0xDB => read_quant(seg, &mut h.quant)?,
            0xC4 => read_huffman(seg, &mut h)?,
            0xDD if seg.len() >= 2 => h.restart = u16::from_be_bytes([seg[0], seg[1]]) as usize,
            0xC0 | 0xC1 => h.frame = Some(read_frame(seg)?),
            0xC2 | 0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                return Err(format!("JPEG process with SOF marker 0xFF{marker:02X} (not sequential Huffman)"))
            }
            0xDA => return scan(&h, seg, &data[pos..], rows, cols),
            _ => {}
        }
    }
}

/// The marker at `pos` and its segment (after the length).
fn segment(data: &[u8], pos: usize) -> Result<(u8, &[u8]), String> {
    let end = "JPEG data ends before the scan";
    if pos + 4 > data.len() || data[pos] != 0xFF {
        return Err(end.into());
    }
    let len = u16::from_be_bytes([data[pos + 2], data[pos + 3]]) as usize;
    let seg = data.get(pos + 4..pos + 2 + len.max(2)).ok_or(end)?;
    Ok((data[pos + 1], seg))
}

fn read_quant(mut seg: &[u8], quant: &mut [Option<[u16; 64]>; 4]) -> Result<(), String> {
    while let Some(&pq_tq) = seg.first() {
        let (wide, t) = (pq_tq >> 4 == 1, (pq_tq & 15) as usize);
        let size = if wide { 128 } else { 64 };
        let body = seg.get(1..1 + size).ok_or("a DQT segment cut short")?;
        let mut q = [0u16; 64];
        for (k, v) in q.iter_mut().enumerate() {
            *v = if wide { u16::from_be_bytes([body[2 * k], body[2 * k + 1]]) } else { body[k] as u16 };
        }
        *quant.get_mut(t).ok_or("a DQT table id above 3")? = Some(q);
        seg = &seg[1 + size..];
    }
    Ok(())
}

fn read_huffman(mut seg: &[u8], h: &mut Headers) -> Result<(), String> {
    while let Some(&tc_th) = seg.first() {
        let counts: [u8; 16] = seg.get(1..17).ok_or("a DHT segment cut short")?.try_into().expect("16 bytes");
        let n: usize = counts.iter().map(|&c| c as usize).sum();
        let values = seg.get(17..17 + n).ok_or("a DHT segment cut short")?.to_vec();
        let table = Huffman::new(&counts, values)?;
        let slot = (tc_th & 15) as usize;
        let tables = if tc_th >> 4 == 0 { &mut h.dc } else { &mut h.ac };
        *tables.get_mut(slot).ok_or("a DHT table id above 3")? = Some(table);
        seg = &seg[17 + n..];
    }
    Ok(())
}

fn read_frame(seg: &[u8]) -> Result<(u8, usize, usize, usize), String> {
    if seg.len() < 9 {
        return Err("a SOF segment cut short".into());
    }
    let (p, y, x, nf) = (seg[0], u16::from_be_bytes([seg[1], seg[2]]) as usize, u16::from_be_bytes([seg[3], seg[4]]) as usize, seg[5]);
    if nf != 1 {
        return Err(format!("a {nf}-component JPEG frame (only monochrome is read)"));
    }
    if !matches!(p, 8 | 12) {
        return Err(format!("JPEG sample precision {p}"));
    }
    Ok((p, y, x, (seg[8] & 3) as usize))
}

/// The scan: every 8x8 block in raster order, each one MCU.
fn scan(h: &Headers, sos: &[u8], ecs: &[u8], rows: usize, cols: usize) -> Result<Vec<u16>, String> {
    let (p, y, x, tq) = h.frame.ok_or("a scan before the frame header")?;
    if (y, x) != (rows, cols) {
        return Err(format!("the JPEG frame is {x} x {y}, the data set says {cols} x {rows}"));
    }
    let sel = *sos.get(2).ok_or("a SOS segment cut short")?;
    let (dc, ac) = (h.dc[(sel >> 4) as usize & 3].as_ref(), h.ac[(sel & 15) as usize & 3].as_ref());
    let (Some(dc), Some(ac), Some(q)) = (dc, ac, h.quant[tq].as_ref()) else {
        return Err("the scan names a Huffman or quantisation table that is not defined".into());
    };
    let (bw, bh) = (x.div_ceil(8), y.div_ceil(8));
    let mut out = vec![0u16; x * y];
    let mut bits = Bits { data: ecs, pos: 0, acc: 0, n: 0 };
    let (mut pred, idct) = (0i32, Idct::new());
    let max = (1i32 << p) - 1;
    for mcu in 0..bw * bh {
        if h.restart > 0 && mcu > 0 && mcu % h.restart == 0 {
            bits.restart();
            pred = 0;
        }
        let mut coef = [0f64; 64];
        let s = bits.decode(dc)?;
        if s > 15 {
            return Err(format!("corrupt entropy-coded data (a DC difference of category {s})"));
        }
        pred = pred.wrapping_add(bits.receive_extend(s));
        coef[0] = pred as f64 * q[0] as f64;
        let mut k = 1;
        while k < 64 {
            let rs = bits.decode(ac)?;
            let (r, s) = ((rs >> 4) as usize, rs & 15);
            if s == 0 {
                if r != 15 {
                    break;
                }
                k += 16;
                continue;
            }
            k += r;
            if k > 63 {
                return Err("corrupt entropy-coded data (a coefficient beyond the block)".into());
            }
            coef[ZIGZAG[k]] = bits.receive_extend(s) as f64 * q[k] as f64;
            k += 1;
        }
        let block = idct.apply(&coef);
        let (by, bx) = (mcu / bw * 8, mcu % bw * 8);
        for (i, v) in block.iter().enumerate() {
            let (r, c) = (by + i / 8, bx + i % 8);
            if r < y && c < x {
                out[r * x + c] = ((v.round() as i32) + (1 << (p - 1))).clamp(0, max) as u16;
            }
        }
    }
    Ok(out)
}

/// The exact 8x8 inverse DCT (T.81 A.3.3), separable.
struct Idct {
    /// c[x][u] = C(u)/2 cos((2x+1) u pi / 16).
    c: [[f64; 8]; 8],
}

impl Idct {
    fn new() -> Idct {
        let mut c = [[0.0; 8]; 8];
        for (x, row) in c.iter_mut().enumerate() {
            for (u, v) in row.iter_mut().enumerate() {
                let cu = if u == 0 { std::f64::consts::FRAC_1_SQRT_2 } else { 1.0 };
                *v = cu / 2.0 * (((2 * x + 1) * u) as f64 * std::f64::consts::PI / 16.0).cos();
            }
        }
        Idct { c }
    }

    fn apply(&self, coef: &[f64; 64]) -> [f64; 64] {
        let mut tmp = [0.0; 64];
        for v in 0..8 {
            for x in 0..8 {
                tmp[v * 8 + x] = (0..8).map(|u| self.c[x][u] * coef[v * 8 + u]).sum();
            }
        }
        let mut out = [0.0; 64];
        for y in 0..8 {
            for x in 0..8 {
                out[y * 8 + x] = (0..8).map(|v| self.c[y][v] * tmp[v * 8 + x]).sum();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 12-bit stream of the corpus's JPEG Extended file.
    fn stream() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/dicom-conformance/JPGExtended.dcm");
        let obj = dicom_object::open_file(path).unwrap();
        let pixel = obj.element(dicom_dictionary_std::tags::PIXEL_DATA).unwrap();
        pixel.value().fragments().unwrap().concat()
    }

    #[test]
    fn header_precision_and_size_checks() {
        let s = stream();
        assert_eq!(precision(&s), Some(12));
        assert_eq!(decode(&s, 1024, 256).unwrap().len(), 1024 * 256);
        let e = decode(&s, 512, 256).err().unwrap_or_default();
        assert!(e.contains("256 x 1024") && e.contains("256 x 512"), "{e}");
        assert!(decode(&s[..2000], 1024, 256).is_ok(), "a cut scan decodes as zeros past the cut");
        assert!(decode(&s[..60], 1024, 256).unwrap_err().contains("ends before the scan"));
    }

    /// Mutated streams give samples or an error, without panicking (the
    /// DICOM reader would catch a panic; this test would not).
    #[test]
    fn mutated_streams_never_panic() {
        let stats = dae_mutate::Campaign::new("jpeg12", vec![stream()]).cases(1_000).run(|b| decode(b, 1024, 256));
        assert!(stats.accepted > 100 && stats.rejected > 50, "{stats:?}");
    }
}
