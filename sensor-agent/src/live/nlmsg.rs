//! The netlink messages of a datagram, as the process connector, sock_diag and nfnetlink send
//! them: a 16-byte header (length, type, flags, sequence, port) and a body, each message aligned to
//! 4 bytes. A message whose length is short or runs past the datagram ends the walk.

/// A netlink message header's size.
pub const HDR: usize = 16;

/// Each message of `datagram` as (type, body).
pub fn messages(datagram: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let h = datagram.get(at..at + HDR)?;
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        if len < HDR || at + len > datagram.len() {
            return None;
        }
        let body = &datagram[at + HDR..at + len];
        at += (len + 3) & !3;
        Some((kind, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = ((HDR + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(body);
        m.resize((m.len() + 3) & !3, 0);
        m
    }

    #[test]
    fn messages_are_walked_aligned_and_a_bad_length_ends_the_walk() {
        let mut d = message(3, b"abcde");
        d.extend(message(20, b""));
        let mut bad = message(7, b"xy");
        bad[0] = 200; // runs past the datagram
        d.extend(bad);
        let got: Vec<(u16, Vec<u8>)> = messages(&d).map(|(k, b)| (k, b.to_vec())).collect();
        assert_eq!(got, vec![(3, b"abcde".to_vec()), (20, Vec::new())]);
        assert_eq!(messages(&[1, 2, 3]).count(), 0);
    }
}
