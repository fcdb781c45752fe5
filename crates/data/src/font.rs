//! A tiny built-in 5x7 bitmap font for writing text labels onto RGB8 images
//! (e.g. PNG preview grids).
//!
//! Fresh machines (CI runners, bare GPU boxes, containers) often have no
//! system fonts installed, so rather than depending on a font file or a font
//! rendering crate, the glyphs live here as plain data. Each glyph is 5 pixels
//! wide and 7 pixels tall, written as 7 strings of 5 characters where `#` is
//! an "on" pixel and `.` is "off". Lowercase letters are drawn with the
//! uppercase glyphs; any character without a glyph is drawn as a box outline.

/// Glyph width in font pixels.
const GLYPH_W: usize = 5;
/// Glyph height in font pixels.
const GLYPH_H: usize = 7;
/// Horizontal gap between glyphs in font pixels.
const GLYPH_GAP: usize = 1;

type Glyph = [&'static str; GLYPH_H];

/// Drawn for any character that has no entry in [`GLYPHS`].
const UNKNOWN: Glyph = ["#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"];

/// The glyph table: (character, 7 rows of 5 columns).
#[rustfmt::skip]
const GLYPHS: &[(char, Glyph)] = &[
    (' ', [".....", ".....", ".....", ".....", ".....", ".....", "....."]),
    // Letters.
    ('A', [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"]),
    ('B', ["####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."]),
    ('C', [".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."]),
    ('D', ["###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."]),
    ('E', ["#####", "#....", "#....", "####.", "#....", "#....", "#####"]),
    ('F', ["#####", "#....", "#....", "####.", "#....", "#....", "#...."]),
    ('G', [".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"]),
    ('H', ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"]),
    ('I', [".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."]),
    ('J', ["..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."]),
    ('K', ["#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"]),
    ('L', ["#....", "#....", "#....", "#....", "#....", "#....", "#####"]),
    ('M', ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"]),
    ('N', ["#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"]),
    ('O', [".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."]),
    ('P', ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."]),
    ('Q', [".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"]),
    ('R', ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"]),
    ('S', [".####", "#....", "#....", ".###.", "....#", "....#", "####."]),
    ('T', ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."]),
    ('U', ["#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."]),
    ('V', ["#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."]),
    ('W', ["#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."]),
    ('X', ["#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"]),
    ('Y', ["#...#", "#...#", "#...#", ".#.#.", "..#..", "..#..", "..#.."]),
    ('Z', ["#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"]),
    // Digits.
    ('0', [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."]),
    ('1', ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."]),
    ('2', [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"]),
    ('3', ["#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."]),
    ('4', ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."]),
    ('5', ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."]),
    ('6', ["..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."]),
    ('7', ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."]),
    ('8', [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."]),
    ('9', [".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."]),
    // Punctuation.
    ('-', [".....", ".....", ".....", "#####", ".....", ".....", "....."]),
    ('_', [".....", ".....", ".....", ".....", ".....", ".....", "#####"]),
    ('/', [".....", "....#", "...#.", "..#..", ".#...", "#....", "....."]),
    (':', [".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."]),
    ('.', [".....", ".....", ".....", ".....", ".....", ".##..", ".##.."]),
    (',', [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."]),
    ('=', [".....", ".....", "#####", ".....", "#####", ".....", "....."]),
    ('(', ["...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."]),
    (')', [".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."]),
    ('+', [".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."]),
    ('%', ["##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"]),
    ('#', [".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."]),
    ('?', [".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."]),
    ('!', ["..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."]),
    ('[', [".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."]),
    (']', [".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."]),
    ('<', ["...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."]),
    ('>', [".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."]),
    ('\'', [".##..", "..#..", ".#...", ".....", ".....", ".....", "....."]),
    ('|', ["..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."]),
];

/// Looks up the glyph for `c`; lowercase letters use the uppercase glyphs and
/// unknown characters get [`UNKNOWN`].
fn glyph(c: char) -> &'static Glyph {
    let c = c.to_ascii_uppercase();
    GLYPHS.iter().find(|(k, _)| *k == c).map(|(_, g)| g).unwrap_or(&UNKNOWN)
}

/// Width in pixels of `text` drawn at integer `scale` (each glyph 5*scale wide plus 1*scale spacing; no trailing spacing).
pub fn text_width(text: &str, scale: usize) -> usize {
    let n = text.chars().count();
    if n == 0 {
        return 0;
    }
    (n * (GLYPH_W + GLYPH_GAP) - GLYPH_GAP) * scale
}

/// Height in pixels of one line at `scale` (7*scale).
pub fn text_height(scale: usize) -> usize {
    GLYPH_H * scale
}

/// Draws `text` into an RGB8 buffer (row-major, 3 bytes per pixel, `width` x `height`), top-left corner at (x, y), each font pixel a scale x scale square of `color`. Pixels outside the buffer are clipped silently (no panic).
#[allow(clippy::too_many_arguments)]
pub fn draw_text(buf: &mut [u8], width: usize, height: usize, x: usize, y: usize, text: &str, scale: usize, color: [u8; 3]) {
    // Clip to the pixels that actually exist: the nominal `width` x `height`,
    // further limited by what `buf` can hold (a short buffer must not panic,
    // and must not make the loops below run over a huge nominal area).
    let pixels = buf.len() / 3;
    let w = width.min(pixels);
    let h = match width {
        0 => 0,
        _ => height.min(pixels.div_ceil(width)),
    };
    if scale == 0 || x >= w || y >= h {
        return;
    }
    // A scale larger than the visible area renders identically to one just
    // larger than it (only the first font pixel can show); clamping keeps the
    // offset arithmetic below far from overflow.
    let scale = scale.min(w.max(h) + 1);
    let advance = (GLYPH_W + GLYPH_GAP) * scale;
    for (i, c) in text.chars().enumerate() {
        let gx = match i.checked_mul(advance).and_then(|o| o.checked_add(x)) {
            Some(gx) if gx < w => gx,
            // This and every later glyph start right of the buffer.
            _ => break,
        };
        for (row, bits) in glyph(c).iter().enumerate() {
            let py0 = y + row * scale;
            for (col, b) in bits.bytes().enumerate() {
                if b != b'#' {
                    continue;
                }
                let px0 = gx + col * scale;
                for py in py0..(py0 + scale).min(h) {
                    for px in px0..(px0 + scale).min(w) {
                        // py < h and px < w imply py * width < pixels and
                        // px < pixels, so this cannot overflow.
                        let idx = (py * width + px) * 3;
                        if let Some(p) = buf.get_mut(idx..idx + 3) {
                            p.copy_from_slice(&color);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(buf: &[u8], width: usize, x: usize, y: usize) -> bool {
        let i = (y * width + x) * 3;
        buf[i..i + 3] != [0, 0, 0]
    }

    #[test]
    fn every_glyph_is_7_rows_of_5_columns() {
        let all = GLYPHS.iter().map(|(_, g)| g).chain(std::iter::once(&UNKNOWN));
        for g in all {
            assert_eq!(g.len(), GLYPH_H);
            for row in g.iter() {
                assert_eq!(row.len(), GLYPH_W, "row {row:?}");
                assert!(row.bytes().all(|b| b == b'#' || b == b'.'), "row {row:?}");
            }
        }
    }

    #[test]
    fn required_characters_have_glyphs_and_no_duplicates() {
        let required = " ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/:.,=()+%#?![]<>'|";
        for c in required.chars() {
            assert!(GLYPHS.iter().any(|(k, _)| *k == c), "missing glyph {c:?}");
        }
        for (i, (a, _)) in GLYPHS.iter().enumerate() {
            assert!(GLYPHS[i + 1..].iter().all(|(b, _)| b != a), "duplicate {a:?}");
        }
        assert_eq!(glyph('a'), glyph('A'));
        assert_eq!(glyph('\u{263A}'), &UNKNOWN);
    }

    #[test]
    fn text_width_and_height_arithmetic() {
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("A", 1), 5);
        assert_eq!(text_width("AB", 1), 11);
        assert_eq!(text_width("ABC", 2), 34);
        assert_eq!(text_width("é", 1), 5);
        assert_eq!(text_height(1), 7);
        assert_eq!(text_height(4), 28);
    }

    #[test]
    fn drawing_clipped_at_border_does_not_panic() {
        let (w, h) = (10, 8);
        let mut buf = vec![0u8; w * h * 3];
        draw_text(&mut buf, w, h, 7, 5, "HELLO #%?", 3, [255, 255, 255]);
        draw_text(&mut buf, w, h, 0, 0, "WIDE TEXT", 9, [255, 0, 0]);
        draw_text(&mut buf, w, h, 100, 100, "X", 1, [1, 2, 3]);
        draw_text(&mut buf, w, h, usize::MAX, usize::MAX, "X", usize::MAX, [1, 2, 3]);
        draw_text(&mut buf, w, h, 0, 0, "X", 0, [1, 2, 3]);
        // A buffer shorter than width*height*3 must not panic either.
        let mut short = vec![0u8; 5];
        draw_text(&mut short, w, h, 0, 0, "M", 2, [9, 9, 9]);
        let big = usize::MAX;
        draw_text(&mut short, big, big, big - 3, big - 3, "MM", big, [9; 3]);
        draw_text(&mut short, big, 2, 1, 0, "MM", big / 2, [9; 3]);
    }

    #[test]
    fn i_and_o_differ() {
        assert_ne!(glyph('I'), glyph('O'));
        let (w, h) = (5, 7);
        let mut a = vec![0u8; w * h * 3];
        let mut b = vec![0u8; w * h * 3];
        draw_text(&mut a, w, h, 0, 0, "I", 1, [255; 3]);
        draw_text(&mut b, w, h, 0, 0, "O", 1, [255; 3]);
        assert_ne!(a, b);
    }

    #[test]
    fn h_at_scale_1_sets_expected_pixels() {
        let (w, h) = (8, 9);
        let mut buf = vec![0u8; w * h * 3];
        draw_text(&mut buf, w, h, 1, 1, "H", 1, [10, 20, 30]);
        for y in 0..h {
            for x in 0..w {
                let inside = (1..=5).contains(&x) && (1..=7).contains(&y);
                let expected = inside && (x == 1 || x == 5 || y == 4);
                assert_eq!(lit(&buf, w, x, y), expected, "pixel ({x}, {y})");
                if expected {
                    let i = (y * w + x) * 3;
                    assert_eq!(&buf[i..i + 3], &[10, 20, 30]);
                }
            }
        }
    }

    #[test]
    fn scale_2_fills_squares() {
        let (w, h) = (10, 14);
        let mut buf = vec![0u8; w * h * 3];
        draw_text(&mut buf, w, h, 0, 0, "|", 2, [255; 3]);
        for y in 0..h {
            for x in 0..w {
                assert_eq!(lit(&buf, w, x, y), x == 4 || x == 5, "pixel ({x}, {y})");
            }
        }
    }
}
