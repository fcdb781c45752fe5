//! TensorBoard scalars of a run (`events.out.tfevents.dae-train` in the run
//! folder): every numeric column of `history.csv`, one event per epoch, so
//! `tensorboard --logdir results/runs` draws the training curves of running
//! and finished jobs alike.
//!
//! The file is TFRecord framing (length, masked CRC-32C of the length, the
//! bytes, their masked CRC-32C) around `tensorflow.Event` protos, written
//! here by hand: the three fields TensorBoard reads for scalars need no
//! protobuf crate. The history is the one source: the file is rewritten from
//! it when a run starts or resumes, and one epoch is appended per epoch.

/// Every epoch of a `history.csv` text as an event file (header first).
pub fn from_history(history_csv: &str, wall_time: f64) -> Vec<u8> {
    let mut out = record(&file_version(wall_time));
    for (step, values) in rows(history_csv) {
        out.extend(record(&scalars(step, wall_time, &values)));
    }
    out
}

/// The last epoch of a `history.csv` text as one event record (empty before
/// the first epoch).
pub fn last_epoch(history_csv: &str, wall_time: f64) -> Vec<u8> {
    rows(history_csv).last().map(|(step, values)| record(&scalars(*step, wall_time, values))).unwrap_or_default()
}

/// `(epoch, [(tag, value)])` per row; empty cells and `epoch` are left out.
/// Tags group in TensorBoard by their prefix: `train/loss...`, `val/...`,
/// `epoch/lr`, `epoch/seconds`.
fn rows(history_csv: &str) -> Vec<(i64, Vec<(String, f64)>)> {
    let mut lines = history_csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let tag = |col: &str| match col {
        c if c.starts_with("loss") => format!("train/{c}"),
        c if c.starts_with("val_") => format!("val/{}", &c[4..]),
        c => format!("epoch/{c}"),
    };
    lines
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let step = cells.first()?.trim().parse::<i64>().ok()?;
            let values = header.iter().zip(&cells).skip(1).filter_map(|(c, v)| Some((tag(c), v.trim().parse::<f64>().ok()?))).collect();
            Some((step, values))
        })
        .collect()
}

/// `Event { wall_time = 1; file_version = 3 }`: the first event of a file.
fn file_version(wall_time: f64) -> Vec<u8> {
    let mut e = vec![0x09];
    e.extend(wall_time.to_le_bytes());
    bytes_field(&mut e, 3, b"brain.Event:2");
    e
}

/// `Event { wall_time = 1; step = 2; summary = 5 }` with one
/// `Summary.Value { tag = 1; simple_value = 2 }` per value.
fn scalars(step: i64, wall_time: f64, values: &[(String, f64)]) -> Vec<u8> {
    let mut summary = Vec::new();
    for (tag, v) in values {
        let mut value = Vec::new();
        bytes_field(&mut value, 1, tag.as_bytes());
        value.push(0x15);
        value.extend((*v as f32).to_le_bytes());
        bytes_field(&mut summary, 1, &value);
    }
    let mut e = vec![0x09];
    e.extend(wall_time.to_le_bytes());
    e.push(0x10);
    varint(&mut e, step as u64);
    bytes_field(&mut e, 5, &summary);
    e
}

fn bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One TFRecord: `u64 length, u32 masked_crc(length), data, u32 masked_crc(data)`.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend(len);
    out.extend(masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend(masked_crc(data).to_le_bytes());
    out
}

fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// CRC-32C (Castagnoli), bitwise: event files are small.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads records back, checking both CRCs, and decodes the scalars.
    fn read(mut bytes: &[u8]) -> Vec<(i64, String, f32)> {
        let mut out = Vec::new();
        let mut first = true;
        while !bytes.is_empty() {
            let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), masked_crc(&bytes[..8]));
            let data = &bytes[12..12 + len];
            assert_eq!(u32::from_le_bytes(bytes[12 + len..16 + len].try_into().unwrap()), masked_crc(data));
            if first {
                assert!(data.ends_with(b"brain.Event:2"));
                first = false;
            } else {
                out.extend(decode_scalars(data));
            }
            bytes = &bytes[16 + len..];
        }
        out
    }

    fn read_varint(e: &[u8], i: &mut usize) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let b = e[*i];
            *i += 1;
            v |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn decode_scalars(e: &[u8]) -> Vec<(i64, String, f32)> {
        assert_eq!((e[0], e[9]), (0x09, 0x10));
        let mut i = 10;
        let step = read_varint(e, &mut i) as i64;
        assert_eq!(e[i], 0x2a);
        i += 1;
        let end = read_varint(e, &mut i) as usize + i;
        let mut out = Vec::new();
        while i < end {
            assert_eq!(e[i], 0x0a);
            i += 1;
            let vlen = read_varint(e, &mut i) as usize;
            let v = &e[i..i + vlen];
            let tlen = v[1] as usize;
            let tag = String::from_utf8(v[2..2 + tlen].to_vec()).unwrap();
            assert_eq!(v[2 + tlen], 0x15);
            out.push((step, tag, f32::from_le_bytes(v[3 + tlen..7 + tlen].try_into().unwrap())));
            i += vlen;
        }
        assert_eq!(i, e.len());
        out
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn a_history_becomes_one_scalar_event_per_epoch_and_appends_add_the_last() {
        let h = "epoch,loss,loss_cls,val_auc,val_attr_acc,lr,seconds\n1,0.75,0.5,0.625,,0.001,2\n2,0.5,0.25,0.75,0.5,0.001,2\n";
        let got = read(&from_history(h, 1.0e9));
        let epoch2: Vec<(i64, String, f32)> = [
            ("train/loss", 0.5),
            ("train/loss_cls", 0.25),
            ("val/auc", 0.75),
            ("val/attr_acc", 0.5),
            ("epoch/lr", 0.001),
            ("epoch/seconds", 2.0),
        ]
        .iter()
        .map(|(t, v)| (2, t.to_string(), *v as f32))
        .collect();
        assert_eq!(got.len(), 5 + 6, "{got:?}");
        assert_eq!(got[..2], [(1, "train/loss".into(), 0.75), (1, "train/loss_cls".into(), 0.5)]);
        assert_eq!(got[5..], epoch2[..]);
        // The file of epoch 1 plus the appended last epoch reads as the whole history.
        let one = h.lines().take(2).collect::<Vec<_>>().join("\n");
        let mut appended = from_history(&one, 1.0e9);
        appended.extend(last_epoch(h, 1.0e9));
        assert_eq!(read(&appended), got);
        assert!(last_epoch("epoch,loss\n", 0.0).is_empty());
    }
}
