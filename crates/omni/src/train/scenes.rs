//! A synthetic scene world with ground truth, for training and measuring image → LLM
//! alignment on a CPU: one to three flat shapes (circle, square, triangle) of distinct
//! colours on a plain background, with captions and questions about colour, shape, count
//! and left/right whose answers are known.
//!
//! Scenes come from a seed, so a dataset is reproducible. Some colour–shape pairs never
//! appear in training scenes; every test scene holds one of them, so test accuracy
//! measures generalisation to new attribute combinations.

use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::datasets::Split;

/// Side of the rendered images (EfficientNet-Lite0's input size).
pub const SCENE_SIZE: u32 = 224;

/// The shapes of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
}

impl Shape {
    pub const ALL: [Shape; 3] = [Shape::Circle, Shape::Square, Shape::Triangle];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
        }
    }
}

/// The colours of the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
}

impl Colour {
    pub const ALL: [Colour; 5] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
        }
    }

    pub(crate) fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 30],
            Colour::Green => [30, 170, 40],
            Colour::Blue => [30, 60, 220],
            Colour::Yellow => [235, 210, 20],
            Colour::Purple => [140, 40, 180],
        }
    }
}

/// Colour–shape pairs that only test scenes contain.
pub const HELD_OUT: [(Colour, Shape); 3] = [
    (Colour::Red, Shape::Triangle),
    (Colour::Green, Shape::Circle),
    (Colour::Blue, Shape::Square),
];

fn held_out(colour: Colour, shape: Shape) -> bool {
    HELD_OUT.contains(&(colour, shape))
}

/// One shape in a scene: centre and half-size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Object {
    pub shape: Shape,
    pub colour: Colour,
    pub x: f32,
    pub y: f32,
    pub radius: f32,
}

impl Object {
    fn label(&self) -> String {
        format!("{} {}", self.colour.name(), self.shape.name())
    }

    /// Whether the point `(px, py)` of the 224-unit square lies inside the shape.
    pub(crate) fn covers(&self, px: f32, py: f32) -> bool {
        let (dx, dy, r) = (px - self.x, py - self.y, self.radius);
        match self.shape {
            Shape::Circle => dx * dx + dy * dy <= r * r,
            Shape::Square => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
            // Apex up, base at y + r/2 ... centred: vertices (0,-r), (±0.87r, r/2).
            Shape::Triangle => {
                let h = 0.866 * r;
                dy <= r * 0.5 && dy >= -r && dx.abs() <= h * (dy + r) / (1.5 * r)
            }
        }
    }
}

/// The kinds of question, for per-kind accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionKind {
    Caption,
    Colour,
    Shape,
    Count,
    Position,
    /// Large or small (point clouds).
    Size,
    /// What a person wearing an IMU does, and whether they move.
    Activity,
    Moving,
    /// Who and what a spoken sentence mentions.
    Who,
    What,
}

impl QuestionKind {
    pub const QUESTIONS: [QuestionKind; 4] = [
        QuestionKind::Colour,
        QuestionKind::Shape,
        QuestionKind::Count,
        QuestionKind::Position,
    ];
}

/// A question about a scene with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Question {
    pub kind: QuestionKind,
    pub question: String,
    pub answer: String,
}

/// A scene: distinct shapes of distinct colours, none overlapping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    pub objects: Vec<Object>,
    /// Background grey level.
    pub background: u8,
}

impl Scene {
    /// A random scene of `split`: test scenes hold a held-out pair, training scenes none.
    pub fn random(rng: &mut StdRng, split: Split) -> Scene {
        loop {
            let count = rng.random_range(1..=3usize);
            let mut shapes = Shape::ALL.to_vec();
            let mut colours = Colour::ALL.to_vec();
            shapes.shuffle(rng);
            colours.shuffle(rng);
            let pairs: Vec<(Colour, Shape)> = (0..count).map(|i| (colours[i], shapes[i])).collect();
            let has_held_out = pairs.iter().any(|&(c, s)| held_out(c, s));
            if has_held_out != (split == Split::Test) {
                continue;
            }
            if let Some(objects) = place(rng, &pairs) {
                return Scene {
                    objects,
                    background: rng.random_range(225..=250),
                };
            }
        }
    }

    /// Draws the scene, `SCENE_SIZE` square.
    pub fn render(&self) -> RgbImage {
        let bg = self.background;
        RgbImage::from_fn(SCENE_SIZE, SCENE_SIZE, |x, y| {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            self.objects
                .iter()
                .find(|o| o.covers(px, py))
                .map_or(Rgb([bg, bg, bg]), |o| Rgb(o.colour.rgb()))
        })
    }

    /// "From left to right: a red circle and a blue square."
    pub fn caption(&self) -> String {
        let labels: Vec<String> = self
            .left_to_right()
            .iter()
            .map(|o| format!("a {}", o.label()))
            .collect();
        match labels.as_slice() {
            [one] => format!("There is {one}."),
            [init @ .., last] => format!("From left to right: {} and {last}.", init.join(", ")),
            [] => "An empty picture.".into(),
        }
    }

    /// One question of each kind that applies (position needs two shapes), asked about a
    /// held-out pair when the scene has one.
    pub fn questions(&self, rng: &mut StdRng) -> Vec<Question> {
        let mut about: Vec<&Object> = self
            .objects
            .iter()
            .filter(|o| held_out(o.colour, o.shape))
            .collect();
        if about.is_empty() {
            about = self.objects.iter().collect();
        }
        let target = about[rng.random_range(0..about.len())];
        let mut out = vec![
            Question {
                kind: QuestionKind::Colour,
                question: format!("What colour is the {}?", target.shape.name()),
                answer: target.colour.name().into(),
            },
            Question {
                kind: QuestionKind::Shape,
                question: format!("What shape is the {} object?", target.colour.name()),
                answer: target.shape.name().into(),
            },
            Question {
                kind: QuestionKind::Count,
                question: "How many shapes are there?".into(),
                answer: self.objects.len().to_string(),
            },
        ];
        let others: Vec<&Object> = self.objects.iter().filter(|o| *o != target).collect();
        if !others.is_empty() {
            let other = others[rng.random_range(0..others.len())];
            out.push(Question {
                kind: QuestionKind::Position,
                question: format!(
                    "Is the {} to the left or to the right of the {}?",
                    target.label(),
                    other.label()
                ),
                answer: if target.x < other.x { "left" } else { "right" }.into(),
            });
        }
        out
    }

    fn left_to_right(&self) -> Vec<&Object> {
        let mut objects: Vec<&Object> = self.objects.iter().collect();
        objects.sort_by(|a, b| a.x.total_cmp(&b.x));
        objects
    }
}

/// Places the shapes without overlap and with distinct horizontal positions (so left and
/// right are clear); `None` when random placement fails (the caller draws again).
fn place(rng: &mut StdRng, pairs: &[(Colour, Shape)]) -> Option<Vec<Object>> {
    let mut objects: Vec<Object> = Vec::new();
    let size = SCENE_SIZE as f32;
    for &(colour, shape) in pairs {
        let fits = (0..100).find_map(|_| {
            let radius = rng.random_range(22.0..38.0f32);
            let x = rng.random_range(radius + 4.0..size - radius - 4.0);
            let y = rng.random_range(radius + 4.0..size - radius - 4.0);
            let clear = objects.iter().all(|o| {
                let (dx, dy) = (o.x - x, o.y - y);
                (dx * dx + dy * dy).sqrt() > o.radius + radius + 6.0 && dx.abs() > 20.0
            });
            clear.then_some(Object {
                shape,
                colour,
                x,
                y,
                radius,
            })
        })?;
        objects.push(fits);
    }
    Some(objects)
}

/// `n` scenes of `split` from `seed`, each with its caption and questions.
pub fn scenes(seed: u64, split: Split, n: usize) -> Vec<(Scene, Vec<Question>)> {
    let salt = match split {
        Split::Train => 0x5eed_0001,
        Split::Test => 0x5eed_0002,
    };
    let mut rng = StdRng::seed_from_u64(seed ^ salt);
    (0..n)
        .map(|_| {
            let scene = Scene::random(&mut rng, split);
            let mut questions = vec![Question {
                kind: QuestionKind::Caption,
                question: "Describe the image.".into(),
                answer: scene.caption(),
            }];
            questions.extend(scene.questions(&mut rng));
            (scene, questions)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_reproducible_and_split_by_held_out_pairs() {
        let a = scenes(1, Split::Train, 50);
        assert_eq!(a, scenes(1, Split::Train, 50));
        assert_ne!(a, scenes(2, Split::Train, 50));
        for (scene, _) in &a {
            assert!(!scene.objects.iter().any(|o| held_out(o.colour, o.shape)));
        }
        for (scene, questions) in scenes(1, Split::Test, 50) {
            let held: Vec<&Object> = scene
                .objects
                .iter()
                .filter(|o| held_out(o.colour, o.shape))
                .collect();
            assert!(!held.is_empty());
            // Colour and shape questions are about a held-out shape.
            let colour_q = questions.iter().find(|q| q.kind == QuestionKind::Colour);
            let asked = colour_q.map(|q| q.answer.clone()).unwrap_or_default();
            assert!(held.iter().any(|o| o.colour.name() == asked), "{asked}");
        }
    }

    #[test]
    fn answers_match_the_rendered_pixels() {
        for (scene, questions) in scenes(3, Split::Train, 40) {
            let image = scene.render();
            for o in &scene.objects {
                assert_eq!(image.get_pixel(o.x as u32, o.y as u32).0, o.colour.rgb());
            }
            let corner = image.get_pixel(0, 0).0;
            assert_eq!(corner, [scene.background; 3]);
            let count = questions
                .iter()
                .find(|q| q.kind == QuestionKind::Count)
                .unwrap();
            assert_eq!(count.answer, scene.objects.len().to_string());
            if let Some(q) = questions.iter().find(|q| q.kind == QuestionKind::Position) {
                // "Is the A to the left or to the right of the B?"
                let rest = q.question.trim_start_matches("Is the ");
                let (a, b) = rest
                    .split_once(" to the left or to the right of the ")
                    .unwrap();
                let b = b.trim_end_matches('?');
                let find = |label: &str| {
                    scene
                        .objects
                        .iter()
                        .find(|o| o.label() == label.trim_start_matches("the "))
                        .unwrap()
                        .x
                };
                let want = if find(a) < find(b) { "left" } else { "right" };
                assert_eq!(q.answer, want);
            }
        }
    }

    #[test]
    fn captions_list_shapes_left_to_right() {
        let scene = Scene {
            background: 240,
            objects: vec![
                Object {
                    shape: Shape::Square,
                    colour: Colour::Blue,
                    x: 150.0,
                    y: 60.0,
                    radius: 30.0,
                },
                Object {
                    shape: Shape::Circle,
                    colour: Colour::Red,
                    x: 50.0,
                    y: 150.0,
                    radius: 30.0,
                },
            ],
        };
        assert_eq!(
            scene.caption(),
            "From left to right: a red circle and a blue square."
        );
    }
}
