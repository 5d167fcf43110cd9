//! How a file is cut into parts, within S3's limits.

/// The part size when none is asked for, unless the file needs larger parts to fit in
/// [`MAX_PARTS`] (measured: `docs/design.md`, "Multipart").
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 << 30;

/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;

/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 << 40;

/// The part size for a file of `size` bytes: `asked` (else [`DEFAULT_PART_SIZE`]), raised to
/// the smallest whole MiB that fits the file in [`MAX_PARTS`]; `None` over [`MAX_OBJECT_SIZE`].
pub fn part_size(size: u64, asked: Option<u64>) -> Option<u64> {
    if size > MAX_OBJECT_SIZE {
        return None;
    }
    let fits = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    Some(
        asked
            .unwrap_or(DEFAULT_PART_SIZE)
            .max(fits)
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE),
    )
}

/// How a file of `size` bytes is cut into parts of `part_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The file's size.
    pub size: u64,
    /// Every part's size but the last's.
    pub part_size: u64,
}

impl Plan {
    /// The number of parts (at least one, for an empty file).
    pub fn parts(&self) -> u32 {
        self.size.div_ceil(self.part_size).max(1) as u32
    }

    /// Offset and length of part `number` (from 1).
    pub fn range(&self, number: u32) -> (u64, u64) {
        let offset = u64::from(number - 1) * self.part_size;
        (offset, self.part_size.min(self.size - offset))
    }

    /// Whether S3 would take this plan: parts within its sizes and count.
    pub(super) fn valid(&self) -> bool {
        (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size)
            && self.size.div_ceil(self.part_size) <= MAX_PARTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn part_sizes_follow_s3s_rules() {
        assert_eq!(part_size(100 * MIB, None), Some(DEFAULT_PART_SIZE));
        assert_eq!(part_size(100 * MIB, Some(5 * MIB)), Some(5 * MIB));
        // Too small a part is raised to S3's minimum.
        assert_eq!(part_size(100 * MIB, Some(MIB)), Some(5 * MIB));
        // 10,000 parts at most: 1 TiB needs 105 MiB parts (104.9 rounded up to the MiB).
        assert_eq!(part_size(1 << 40, None), Some(105 * MIB));
        assert_eq!(part_size(1 << 40, Some(5 * MIB)), Some(105 * MIB));
        assert_eq!(part_size(MAX_OBJECT_SIZE, None), Some(525 * MIB));
        assert_eq!(part_size(MAX_OBJECT_SIZE + 1, None), None);
        let plan = Plan {
            size: MAX_OBJECT_SIZE,
            part_size: 525 * MIB,
        };
        assert!(plan.valid() && plan.parts() as u64 <= MAX_PARTS);
    }

    #[test]
    fn a_plan_cuts_the_file_into_ranges() {
        let plan = Plan {
            size: 12 * MIB + 3,
            part_size: 5 * MIB,
        };
        assert_eq!(plan.parts(), 3);
        assert_eq!(plan.range(1), (0, 5 * MIB));
        assert_eq!(plan.range(3), (10 * MIB, 2 * MIB + 3));
        let exact = Plan {
            size: 10 * MIB,
            part_size: 5 * MIB,
        };
        assert_eq!((exact.parts(), exact.range(2)), (2, (5 * MIB, 5 * MIB)));
        assert!(
            !Plan {
                size: 10 * MIB,
                part_size: MIB
            }
            .valid()
        );
    }
}
