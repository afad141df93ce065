//! A bounded series for live charts: when full, every other point is dropped
//! and the stride doubles, so a long run keeps its whole shape in a fixed
//! number of points (the files keep every point).

#[derive(Debug, Clone, PartialEq)]
pub struct History {
    capacity: usize,
    /// Keep one point of every `stride` pushed.
    stride: usize,
    pending: usize,
    points: Vec<(f64, f64)>,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity >= 2);
        Self { capacity, stride: 1, pending: 0, points: Vec::with_capacity(capacity) }
    }

    pub fn push(&mut self, x: f64, y: f64) {
        self.pending += 1;
        if self.pending < self.stride {
            return;
        }
        self.pending = 0;
        if self.points.len() == self.capacity {
            let mut keep = false;
            self.points.retain(|_| {
                keep = !keep;
                keep
            });
            self.stride *= 2;
        }
        self.points.push((x, y));
    }

    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    pub fn last(&self) -> Option<(f64, f64)> {
        self.points.last().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_the_span() {
        let mut h = History::new(8);
        for i in 0..1000 {
            h.push(i as f64, (i * 2) as f64);
        }
        assert!(h.points().len() <= 8);
        assert_eq!(h.points()[0], (0.0, 0.0));
        let last = h.last().unwrap().0;
        assert!(last > 850.0, "the newest points survive thinning: {last}");
        // Points stay in order.
        assert!(h.points().windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn keeps_everything_below_capacity() {
        let mut h = History::new(8);
        for i in 0..5 {
            h.push(i as f64, 1.0);
        }
        assert_eq!(h.points().len(), 5);
    }
}
