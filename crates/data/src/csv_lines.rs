//! Physical line numbers of CSV records, for error messages. csv's
//! `Position::line` lags one line behind after CRLF line ends (the CBIS-DDSM
//! tables have them) and after blank lines (rust-csv issues 395 and 208), so
//! the line is counted here from the record's byte offset.

/// Counts lines through one CSV text as its records are read in order.
pub(crate) struct PhysicalLines<'a> {
    text: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> PhysicalLines<'a> {
    pub(crate) fn new(text: &'a [u8]) -> PhysicalLines<'a> {
        PhysicalLines { text, at: 0, line: 1 }
    }

    /// The 1-based line on which the record at `pos` starts (0 without a
    /// position): its first byte after any line ends before it.
    pub(crate) fn line_of(&mut self, pos: Option<&csv::Position>) -> u64 {
        let Some(p) = pos else { return 0 };
        let mut start = (p.byte() as usize).min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start < self.at {
            (self.at, self.line) = (0, 1);
        }
        self.line += self.text[self.at..start].iter().filter(|&&b| b == b'\n').count() as u64;
        self.at = start;
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each record's first field says the line it starts on.
    fn lines_of(text: &str) -> Vec<(u64, u64)> {
        let mut rdr = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let mut lines = PhysicalLines::new(text.as_bytes());
        rdr.records().map(|r| r.unwrap()).map(|r| (r[0].parse().unwrap(), lines.line_of(r.position()))).collect()
    }

    #[test]
    fn records_get_the_line_they_start_on_with_crlf_blank_lines_and_quoted_newlines() {
        for (expected, got) in lines_of("line,x\r\n2,a\r\n3,b\r\n\r\n5,c\r\n6,\"two\r\nlines\"\r\n8,d") {
            assert_eq!(got, expected);
        }
        for (expected, got) in lines_of("line,x\n2,a\n\n\n5,\"a\nb\nc\"\n8,d\n") {
            assert_eq!(got, expected);
        }
    }
}
