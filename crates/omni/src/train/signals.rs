//! Synthetic worlds with ground truth for OneLLM's non-visual modalities, so that every
//! modality has captions, questions and a held-out split on a CPU-only machine:
//!
//! - **point**: point clouds of primitive solids (sphere, cube, cylinder, cone), small or
//!   large, turned about the vertical axis, coloured; x, y, z, r, g, b per point;
//! - **IMU**: accelerometer + gyroscope windows (6 × samples at 200 Hz) of simulated
//!   activities (sitting, walking, running, jumping, turning);
//! - **fMRI**: voxel responses of a simulated visual cortex to one coloured shape, a fixed
//!   random encoding of shape and colour plus noise (the same "brain" for every split).
//!
//! Samples come from a seed. Test samples of point and fMRI hold colour–shape pairs that
//! training never shows; test IMU windows use step rates and strengths between the ones
//! training uses.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::datasets::Split;
use super::scenes::{Colour, Question, QuestionKind};

/// A standard normal sample (Box–Muller).
fn normal(rng: &mut StdRng) -> f32 {
    let u: f32 = rng.random_range(f32::EPSILON..1.0);
    let v: f32 = rng.random_range(0.0..1.0);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

pub(crate) fn question(kind: QuestionKind, question: impl Into<String>, answer: &str) -> Question {
    Question {
        kind,
        question: question.into(),
        answer: answer.into(),
    }
}

/// One sample: the signal (row-major, `shape`), a caption and questions.
#[derive(Debug, Clone)]
pub struct Sample {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
    pub caption: String,
    pub questions: Vec<Question>,
}

/// The solids of the point-cloud world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Solid {
    Sphere,
    Cube,
    Cylinder,
    Cone,
}

impl Solid {
    pub const ALL: [Solid; 4] = [Solid::Sphere, Solid::Cube, Solid::Cylinder, Solid::Cone];

    pub fn name(self) -> &'static str {
        match self {
            Solid::Sphere => "sphere",
            Solid::Cube => "cube",
            Solid::Cylinder => "cylinder",
            Solid::Cone => "cone",
        }
    }

    /// A point on the unit solid's surface (radius / half-size 1), uniform in area.
    fn surface_point(self, rng: &mut StdRng) -> [f32; 3] {
        let angle = rng.random_range(0.0..std::f32::consts::TAU);
        match self {
            Solid::Sphere => {
                let z: f32 = rng.random_range(-1.0..1.0);
                let r = (1.0 - z * z).sqrt();
                [r * angle.cos(), r * angle.sin(), z]
            }
            Solid::Cube => {
                let face = rng.random_range(0..6usize);
                let (a, b) = (rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0));
                let s = if face % 2 == 0 { 1.0 } else { -1.0 };
                match face / 2 {
                    0 => [s, a, b],
                    1 => [a, s, b],
                    _ => [a, b, s],
                }
            }
            Solid::Cylinder => {
                // Side area 4π, caps 2π together.
                if rng.random_range(0.0..3.0) < 2.0 {
                    [angle.cos(), angle.sin(), rng.random_range(-1.0..1.0)]
                } else {
                    let r = rng.random_range(0.0f32..1.0).sqrt();
                    let z = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
                    [r * angle.cos(), r * angle.sin(), z]
                }
            }
            Solid::Cone => {
                // Apex at z = 1, base of radius 1 at z = −1; side area π√5, base π.
                if rng.random_range(0.0..(5f32.sqrt() + 1.0)) < 5f32.sqrt() {
                    let t = rng.random_range(0.0f32..1.0).sqrt();
                    [t * angle.cos(), t * angle.sin(), 1.0 - 2.0 * t]
                } else {
                    let r = rng.random_range(0.0f32..1.0).sqrt();
                    [r * angle.cos(), r * angle.sin(), -1.0]
                }
            }
        }
    }
}

/// Colour–solid pairs only test point clouds (and fMRI responses) contain.
pub const HELD_OUT_SOLIDS: [(Colour, Solid); 4] = [
    (Colour::Red, Solid::Cone),
    (Colour::Green, Solid::Sphere),
    (Colour::Blue, Solid::Cube),
    (Colour::Yellow, Solid::Cylinder),
];

/// A random colour and one of `shapes`: a `held_out` pair for the test split, any
/// other pair for training.
pub(crate) fn held_out_pair<S: Copy + PartialEq>(
    rng: &mut StdRng,
    split: Split,
    shapes: &[S],
    held_out: &[(Colour, S)],
) -> (Colour, S) {
    loop {
        let c = Colour::ALL[rng.random_range(0..Colour::ALL.len())];
        let s = shapes[rng.random_range(0..shapes.len())];
        if held_out.contains(&(c, s)) == (split == Split::Test) {
            return (c, s);
        }
    }
}

fn colour_and_solid(rng: &mut StdRng, split: Split) -> (Colour, Solid) {
    held_out_pair(rng, split, &Solid::ALL, &HELD_OUT_SOLIDS)
}

fn colour_rgb(c: Colour) -> [f32; 3] {
    match c {
        Colour::Red => [0.86, 0.12, 0.12],
        Colour::Green => [0.12, 0.67, 0.16],
        Colour::Blue => [0.12, 0.24, 0.86],
        Colour::Yellow => [0.92, 0.82, 0.08],
        Colour::Purple => [0.55, 0.16, 0.7],
    }
}

/// A point cloud of `points` points: (points, 6).
pub fn point_cloud(rng: &mut StdRng, split: Split, points: usize) -> Sample {
    let (colour, solid) = colour_and_solid(rng, split);
    let large = rng.random_bool(0.5);
    let scale = if large { 1.0 } else { 0.5 } * rng.random_range(0.9..1.1);
    let turn = rng.random_range(0.0..std::f32::consts::TAU);
    let (sin, cos) = turn.sin_cos();
    let rgb = colour_rgb(colour);
    let mut data = Vec::with_capacity(points * 6);
    for _ in 0..points {
        let [x, y, z] = solid.surface_point(rng);
        let (x, y) = (x * cos - y * sin, x * sin + y * cos);
        data.extend([x * scale, y * scale, z * scale]);
        data.extend(rgb.map(|v| (v + 0.03 * normal(rng)).clamp(0.0, 1.0)));
    }
    let size = if large { "large" } else { "small" };
    let (c, s) = (colour.name(), solid.name());
    Sample {
        data,
        shape: vec![points, 6],
        caption: format!("A {size} {c} {s}."),
        questions: vec![
            question(QuestionKind::Shape, "What shape is this?", s),
            question(QuestionKind::Colour, "What colour is it?", c),
            question(QuestionKind::Size, "Is it large or small?", size),
        ],
    }
}

/// The activities of the IMU world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    Sitting,
    Walking,
    Running,
    Jumping,
    Turning,
}

impl Activity {
    pub const ALL: [Activity; 5] = [
        Activity::Sitting,
        Activity::Walking,
        Activity::Running,
        Activity::Jumping,
        Activity::Turning,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Activity::Sitting => "sitting",
            Activity::Walking => "walking",
            Activity::Running => "running",
            Activity::Jumping => "jumping",
            Activity::Turning => "turning",
        }
    }

    fn moving(self) -> bool {
        !matches!(self, Activity::Sitting)
    }
}

/// IMU sample rate, Hz.
pub const IMU_RATE: f32 = 200.0;

/// A window of `samples` IMU readings: (6, samples), channels accelerometer x, y, z
/// (m/s², gravity included) then gyroscope x, y, z (rad/s).
pub fn imu_window(rng: &mut StdRng, split: Split, samples: usize) -> Sample {
    let activity = Activity::ALL[rng.random_range(0..Activity::ALL.len())];
    // Training draws the rate and strength from the outer thirds of each range, test
    // from the middle third.
    let mut pick = |lo: f32, hi: f32| {
        let third = (hi - lo) / 3.0;
        match split {
            Split::Test => rng.random_range(lo + third..hi - third),
            Split::Train if rng.random_bool(0.5) => rng.random_range(lo..lo + third),
            Split::Train => rng.random_range(hi - third..hi),
        }
    };
    let (rate, strength) = match activity {
        Activity::Sitting => (0.0, 0.0),
        Activity::Walking => (pick(1.6, 2.2), pick(1.5, 3.0)),
        Activity::Running => (pick(2.6, 3.4), pick(5.0, 8.0)),
        Activity::Jumping => (pick(0.8, 1.3), pick(10.0, 16.0)),
        Activity::Turning => (0.0, pick(1.0, 2.5)),
    };
    let phase = rng.random_range(0.0..std::f32::consts::TAU);
    let tilt = rng.random_range(-0.2f32..0.2);
    let direction = if rng.random_bool(0.5) { 1.0 } else { -1.0 };
    let mut data = vec![0f32; 6 * samples];
    for t in 0..samples {
        let time = t as f32 / IMU_RATE;
        let w = std::f32::consts::TAU * rate * time + phase;
        let (mut a, mut g) = ([9.81 * tilt.sin(), 0.0, 9.81 * tilt.cos()], [0f32; 3]);
        match activity {
            Activity::Sitting => {}
            Activity::Walking | Activity::Running => {
                a[2] += strength * w.sin();
                a[0] += 0.5 * strength * (2.0 * w).sin();
                g[1] += 0.1 * strength * w.cos();
            }
            Activity::Jumping => {
                // A push-off spike once a cycle, then free fall.
                let cycle = (w / std::f32::consts::TAU).fract();
                a[2] += if cycle < 0.15 {
                    strength * (cycle / 0.15 * std::f32::consts::PI).sin()
                } else {
                    -9.0
                };
            }
            Activity::Turning => g[2] += direction * strength,
        }
        for (ch, v) in a.into_iter().chain(g).enumerate() {
            let noise = if ch < 3 { 0.15 } else { 0.03 };
            data[ch * samples + t] = v + noise * normal(rng);
        }
    }
    let name = activity.name();
    let moving = if activity.moving() { "yes" } else { "no" };
    Sample {
        data,
        shape: vec![6, samples],
        caption: format!("The person is {name}."),
        questions: vec![
            question(QuestionKind::Activity, "What is the person doing?", name),
            question(QuestionKind::Moving, "Is the person moving?", moving),
        ],
    }
}

/// A simulated brain: fixed random voxel patterns of each shape and colour.
#[derive(Debug, Clone)]
pub struct Brain {
    voxels: usize,
    shapes: Vec<Vec<f32>>,
    colours: Vec<Vec<f32>>,
}

impl Brain {
    /// The brain of `seed` with `voxels` voxels (the same for every split).
    pub fn new(seed: u64, voxels: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut pattern = |_| (0..voxels).map(|_| normal(&mut rng)).collect::<Vec<f32>>();
        Self {
            voxels,
            shapes: (0..Solid::ALL.len()).map(&mut pattern).collect(),
            colours: (0..Colour::ALL.len()).map(&mut pattern).collect(),
        }
    }

    /// The response to one coloured solid: (voxels).
    pub fn response(&self, rng: &mut StdRng, split: Split) -> Sample {
        let (colour, solid) = colour_and_solid(rng, split);
        let s = &self.shapes[Solid::ALL.iter().position(|&x| x == solid).unwrap_or(0)];
        let c = &self.colours[Colour::ALL.iter().position(|&x| x == colour).unwrap_or(0)];
        let data = (0..self.voxels)
            .map(|v| (s[v] + 0.7 * c[v]).tanh() + 0.3 * normal(rng))
            .collect();
        let (c, s) = (colour.name(), solid.name());
        Sample {
            data,
            shape: vec![self.voxels],
            caption: format!("The subject saw a {c} {s}."),
            questions: vec![
                question(QuestionKind::Shape, "What shape did the subject see?", s),
                question(QuestionKind::Colour, "What colour was it?", c),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_reproducible_and_held_out_pairs_stay_in_test() {
        let a = point_cloud(&mut StdRng::seed_from_u64(3), Split::Train, 64);
        let b = point_cloud(&mut StdRng::seed_from_u64(3), Split::Train, 64);
        assert_eq!(a.data, b.data);
        assert_eq!(a.shape, vec![64, 6]);
        let mut rng = StdRng::seed_from_u64(4);
        for _ in 0..50 {
            let s = point_cloud(&mut rng, Split::Test, 8);
            let held = HELD_OUT_SOLIDS
                .iter()
                .any(|(c, p)| s.caption.contains(&format!("{} {}", c.name(), p.name())));
            assert!(held, "{}", s.caption);
        }
    }

    #[test]
    fn solids_lie_on_their_surfaces() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let [x, y, z] = Solid::Sphere.surface_point(&mut rng);
            assert!(((x * x + y * y + z * z).sqrt() - 1.0).abs() < 1e-5);
            let [x, y, z] = Solid::Cube.surface_point(&mut rng);
            assert!((x.abs().max(y.abs()).max(z.abs()) - 1.0).abs() < 1e-6);
        }
    }

    #[test]
    fn activities_differ_in_the_signal() {
        let mut rng = StdRng::seed_from_u64(2);
        let energy = |s: &Sample| {
            let z = &s.data[2 * 400..3 * 400];
            let mean = z.iter().sum::<f32>() / 400.0;
            z.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 400.0
        };
        let (mut still, mut moving) = (Vec::new(), Vec::new());
        for _ in 0..40 {
            let s = imu_window(&mut rng, Split::Train, 400);
            assert!(s.data.iter().all(|v| v.is_finite()));
            match s.caption.as_str() {
                "The person is sitting." => still.push(energy(&s)),
                "The person is running." => moving.push(energy(&s)),
                _ => {}
            }
        }
        let max_still = still.iter().cloned().fold(0.0, f32::max);
        let min_moving = moving.iter().cloned().fold(f32::MAX, f32::min);
        assert!(max_still < min_moving, "{max_still} vs {min_moving}");
    }

    #[test]
    fn one_brain_for_every_split() {
        let brain = Brain::new(9, 32);
        let again = Brain::new(9, 32);
        assert_eq!(brain.shapes, again.shapes);
        let r = brain.response(&mut StdRng::seed_from_u64(0), Split::Test);
        assert_eq!(r.data.len(), 32);
        assert!(r.caption.starts_with("The subject saw a "));
    }
}
