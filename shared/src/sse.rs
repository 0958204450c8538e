//! Incremental Server-Sent Events parser (WHATWG event-stream rules).
//!
//! Bytes arrive in arbitrary chunks (a frame, or even a UTF-8 character or a CRLF
//! pair, can be split across reads); [`SseParser::push`] buffers partial lines and
//! returns every complete frame. Lines end in LF, CRLF or a lone CR. `data` lines of
//! one frame are joined with `\n`; comment lines (`:`) are ignored; a frame is
//! dispatched on a blank line. A frame with neither `data` nor `event` is dropped.

/// One dispatched SSE frame.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseFrame {
    pub event: Option<String>,
    pub data: String,
    pub id: Option<String>,
}

/// Streaming parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in CR: a leading LF of the next chunk belongs to it.
    pending_cr: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    /// Max bytes for one line; protects memory against a peer that never sends a newline.
    max_line: usize,
}

/// Error for a line longer than the configured maximum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SSE line exceeds {0} bytes")]
pub struct LineTooLong(pub usize);

impl SseParser {
    /// Default cap on one SSE line (16 MiB: a tool_use input may be large).
    pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

    pub fn new() -> Self {
        Self::with_max_line(Self::DEFAULT_MAX_LINE)
    }

    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            max_line,
            ..Self::default()
        }
    }

    /// Feed a chunk; returns the frames it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseFrame>, LineTooLong> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.pending_cr {
            self.pending_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            if self.line.len() > self.max_line {
                return Err(LineTooLong(self.max_line));
            }
            let is_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            if is_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.pending_cr = true,
                    _ => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(frame) = self.process_line(&line) {
                out.push(frame);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > self.max_line {
            return Err(LineTooLong(self.max_line));
        }
        Ok(out)
    }

    fn process_line(&mut self, line: &[u8]) -> Option<SseFrame> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields are ignored.
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseFrame> {
        let event = self.event.take();
        let data = self.data.take();
        if event.is_none() && data.is_none() {
            return None;
        }
        Some(SseFrame {
            event,
            data: data.unwrap_or_default(),
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseFrame> {
        let mut p = SseParser::new();
        chunks.iter().flat_map(|c| p.push(c).unwrap()).collect()
    }

    #[test]
    fn basic_frames_and_pings() {
        let f =
            parse_all(&[b"event: ping\ndata: {}\n\nevent: agent.tool_use\ndata: {\"a\":1}\n\n"]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].event.as_deref(), Some("ping"));
        assert_eq!(f[1].data, "{\"a\":1}");
    }

    #[test]
    fn split_across_every_byte_boundary() {
        let input =
            b"event: x\r\ndata: line1\r\ndata: line2\r\n\r\n: comment\n\nevent: y\rdata: z\r\r";
        let whole = parse_all(&[input]);
        assert_eq!(whole.len(), 2);
        assert_eq!(whole[0].data, "line1\nline2");
        assert_eq!(whole[1].event.as_deref(), Some("y"));
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(parse_all(&[a, b]), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn utf8_split_inside_character() {
        let input = "event: e\ndata: {\"t\":\"é😀\"}\n\n".as_bytes();
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            let f = parse_all(&[a, b]);
            assert_eq!(f[0].data, "{\"t\":\"é😀\"}");
        }
    }

    #[test]
    fn no_space_after_colon_and_empty_data() {
        let f = parse_all(&[b"event:e\ndata\n\n"]);
        assert_eq!(f[0].event.as_deref(), Some("e"));
        assert_eq!(f[0].data, "");
    }

    #[test]
    fn blank_lines_alone_dispatch_nothing() {
        assert!(parse_all(&[b"\n\n\n: hi\n\n"]).is_empty());
    }

    #[test]
    fn overlong_line_is_an_error() {
        let mut p = SseParser::with_max_line(8);
        assert!(p.push(b"data: 0123456789").is_err());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

            /// Arbitrary bytes never panic, and chunking never changes the frames.
            #[test]
            fn arbitrary_bytes_any_chunking(data in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..2048) {
                let mut whole = SseParser::new();
                let a = whole.push(&data).unwrap();
                let cut = cut.min(data.len());
                let mut split = SseParser::new();
                let mut b = split.push(&data[..cut]).unwrap();
                b.extend(split.push(&data[cut..]).unwrap());
                prop_assert_eq!(a, b);
            }

            /// Frames built from arbitrary event/data text round-trip.
            #[test]
            fn frames_round_trip(event in "[a-z._]{1,20}", data in "[^\r\n]{0,200}") {
                let text = format!("event: {event}\ndata: {data}\n\n");
                let frames = SseParser::new().push(text.as_bytes()).unwrap();
                prop_assert_eq!(frames.len(), 1);
                prop_assert_eq!(frames[0].event.as_deref(), Some(event.as_str()));
                // Exactly one space after the colon is stripped; the data itself is intact.
                prop_assert_eq!(frames[0].data.as_str(), data.as_str());
            }
        }
    }
}
