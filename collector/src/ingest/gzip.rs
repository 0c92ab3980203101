//! Bounded gzip decoding: a body inflates into at most `cap` bytes, so a gzip bomb costs at
//! most `cap` of memory before it is refused.

use std::io::Read;

use flate2::read::MultiGzDecoder;

/// Why a body could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum GunzipError {
    /// It inflates to more than the cap.
    TooLarge,
    /// It is not valid gzip.
    Invalid(String),
}

/// Inflate `body`, refusing output beyond `cap` bytes.
pub fn gunzip_capped(body: &[u8], cap: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity(cap.min(body.len().saturating_mul(4)));
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    MultiGzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| GunzipError::Invalid(e.to_string()))?;
    if out.len() > cap {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::write::GzEncoder;
    use flate2::Compression;

    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    #[test]
    fn round_trips_under_the_cap() {
        assert_eq!(gunzip_capped(&gz(b"hello"), 10), Ok(b"hello".to_vec()));
    }

    #[test]
    fn a_bomb_stops_at_the_cap() {
        let bomb = gz(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(gunzip_capped(&bomb, 512 * 1024), Err(GunzipError::TooLarge));
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(
            gunzip_capped(b"not gzip at all", 100),
            Err(GunzipError::Invalid(_))
        ));
    }
}
