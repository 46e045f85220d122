//! Synthetic frame worlds with ground truth for OneLLM's video, depth and normal
//! modalities, drawn with the scene world's shapes and colours (and its held-out
//! colour–shape pairs, which only test samples contain):
//!
//! - **image**: the scene world's pictures at the stems' size;
//! - **video**: one shape crossing the frame left, right, up or down;
//! - **depth** (RGB + depth map): two shapes of the same size, one nearer; only the depth
//!   map tells which;
//! - **normal** (RGB + normal map): one shape, flat or bulging; only the normal map tells.
//!
//! Frames are `(3, S, S)`, normalised with CLIP's mean and standard deviation.

use rand::RngExt;
use rand::rngs::StdRng;

use super::datasets::Split;
use super::scenes::{Colour, HELD_OUT, Object, QuestionKind, SCENE_SIZE, Scene, Shape};
use super::signals::{Sample, held_out_pair, question};

const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

fn colour_and_shape(rng: &mut StdRng, split: Split) -> (Colour, Shape) {
    held_out_pair(rng, split, &Shape::ALL, &HELD_OUT)
}

/// Appends one `(3, S, S)` frame, normalised; `pixel(x, y)` gives 0–1 RGB at a point of
/// the scene world's 224-unit square.
fn push_frame(data: &mut Vec<f32>, size: usize, pixel: impl Fn(f32, f32) -> [f32; 3]) {
    let scale = SCENE_SIZE as f32 / size as f32;
    let start = data.len();
    data.resize(start + 3 * size * size, 0.0);
    for y in 0..size {
        for x in 0..size {
            let rgb = pixel((x as f32 + 0.5) * scale, (y as f32 + 0.5) * scale);
            for ch in 0..3 {
                data[start + (ch * size + y) * size + x] = (rgb[ch] - MEAN[ch]) / STD[ch];
            }
        }
    }
}

/// A picture as one frame of these worlds: resized to `size` × `size`, `(3, S, S)`,
/// normalised like the rendered ones.
pub fn picture_frame(picture: &image::RgbImage, size: usize) -> Vec<f32> {
    let side = size as u32;
    let resized =
        image::imageops::resize(picture, side, side, image::imageops::FilterType::Triangle);
    let mut data = vec![0f32; 3 * size * size];
    for (x, y, p) in resized.enumerate_pixels() {
        for ch in 0..3 {
            data[(ch * size + y as usize) * size + x as usize] =
                (p[ch] as f32 / 255.0 - MEAN[ch]) / STD[ch];
        }
    }
    data
}

/// One frame `(3, S, S)` of these worlds back as a picture (the inverse of
/// [`picture_frame`] at the same size, to 8 bits).
pub fn frame_picture(frame: &[f32], size: usize) -> image::RgbImage {
    let plane = size * size;
    image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
        let at = y as usize * size + x as usize;
        image::Rgb(std::array::from_fn(|ch| {
            ((frame[ch * plane + at] * STD[ch] + MEAN[ch]) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        }))
    })
}

fn rgb(o: &Object) -> [f32; 3] {
    o.colour.rgb().map(|v| v as f32 / 255.0)
}

const BACKGROUND: [f32; 3] = [0.93; 3];

/// A scene of the image world drawn at `size`: `(3, S, S)`, with its caption and
/// questions.
pub fn scene_image(rng: &mut StdRng, split: Split, size: usize) -> Sample {
    let scene = Scene::random(rng, split);
    let bg = [scene.background as f32 / 255.0; 3];
    let mut data = Vec::with_capacity(3 * size * size);
    push_frame(&mut data, size, |x, y| {
        scene
            .objects
            .iter()
            .find(|o| o.covers(x, y))
            .map_or(bg, rgb)
    });
    Sample {
        data,
        shape: vec![3, size, size],
        caption: scene.caption(),
        questions: scene.questions(rng),
    }
}

/// `frames` frames of one shape crossing the square: `(frames, 3, S, S)`.
pub fn video_clip(rng: &mut StdRng, split: Split, frames: usize, size: usize) -> Sample {
    let (colour, shape) = colour_and_shape(rng, split);
    // Left, right, up, down.
    let d = rng.random_range(0..4usize);
    let side = SCENE_SIZE as f32;
    let radius = rng.random_range(0.14..0.2) * side;
    let across = rng.random_range(0.3..0.7) * side;
    let (from, to) = (radius + 4.0, side - radius - 4.0);
    let mut data = Vec::with_capacity(frames * 3 * size * size);
    for f in 0..frames {
        let t = f as f32 / (frames.max(2) - 1) as f32;
        let along = match d {
            0 | 2 => to + (from - to) * t,
            _ => from + (to - from) * t,
        };
        let (x, y) = if d < 2 {
            (along, across)
        } else {
            (across, along)
        };
        let o = Object {
            shape,
            colour,
            x,
            y,
            radius,
        };
        push_frame(&mut data, size, |px, py| {
            if o.covers(px, py) {
                rgb(&o)
            } else {
                BACKGROUND
            }
        });
    }
    // The model averages a clip's frames after the encoder (as OneLLM does), so it can
    // tell the axis of the motion from the trail but not its direction.
    let (c, s) = (colour.name(), shape.name());
    let axis = if d < 2 { "sideways" } else { "vertically" };
    Sample {
        data,
        shape: vec![frames, 3, size, size],
        caption: format!("A {c} {s} moves {axis}."),
        questions: vec![
            question(
                QuestionKind::Position,
                "Does the shape move sideways or vertically?",
                axis,
            ),
            question(QuestionKind::Shape, "What shape is moving?", s),
            question(QuestionKind::Colour, "What colour is the moving shape?", c),
        ],
    }
}

/// Two shapes of one size side by side, one nearer: `(2, 3, S, S)`, the photo then its
/// depth map (nearer is brighter).
pub fn depth_scene(rng: &mut StdRng, split: Split, size: usize) -> Sample {
    let (c0, s0) = colour_and_shape(rng, split);
    let (c1, s1) = loop {
        let (c, s) = colour_and_shape(rng, Split::Train);
        if c != c0 && s != s0 {
            break (c, s);
        }
    };
    let side = SCENE_SIZE as f32;
    let radius = rng.random_range(0.15..0.2) * side;
    let y = rng.random_range(0.35..0.65) * side;
    let first_left = rng.random_bool(0.5);
    let (xa, xb) = if first_left {
        (0.27, 0.73)
    } else {
        (0.73, 0.27)
    };
    let objects = [
        Object {
            shape: s0,
            colour: c0,
            x: xa * side,
            y,
            radius,
        },
        Object {
            shape: s1,
            colour: c1,
            x: xb * side,
            y,
            radius,
        },
    ];
    let near = rng.random_range(0..2usize);
    let depth = |i: usize| if i == near { 0.9 } else { 0.45 };
    let hit = |px: f32, py: f32| objects.iter().position(|o| o.covers(px, py));
    let mut data = Vec::with_capacity(2 * 3 * size * size);
    push_frame(&mut data, size, |px, py| {
        hit(px, py).map_or(BACKGROUND, |i| rgb(&objects[i]))
    });
    push_frame(&mut data, size, |px, py| {
        [hit(px, py).map_or(0.05, depth); 3]
    });
    let name = |o: &Object| format!("{} {}", o.colour.name(), o.shape.name());
    let (n, f) = (&objects[near], &objects[1 - near]);
    Sample {
        data,
        shape: vec![2, 3, size, size],
        caption: format!("A {} in front of a {}.", name(n), name(f)),
        questions: vec![
            question(
                QuestionKind::Shape,
                "Which shape is nearer?",
                n.shape.name(),
            ),
            question(
                QuestionKind::Colour,
                "What colour is the nearer shape?",
                n.colour.name(),
            ),
        ],
    }
}

/// One shape, flat or bulging: `(2, 3, S, S)`, the photo then its normal map (normals
/// as RGB = (n + 1) / 2, facing the camera = (0.5, 0.5, 1)).
pub fn normal_scene(rng: &mut StdRng, split: Split, size: usize) -> Sample {
    let (colour, shape) = colour_and_shape(rng, split);
    let side = SCENE_SIZE as f32;
    let o = Object {
        shape,
        colour,
        x: rng.random_range(0.35..0.65) * side,
        y: rng.random_range(0.35..0.65) * side,
        radius: rng.random_range(0.2..0.3) * side,
    };
    let round = rng.random_bool(0.5);
    let mut data = Vec::with_capacity(2 * 3 * size * size);
    push_frame(&mut data, size, |px, py| {
        if o.covers(px, py) {
            rgb(&o)
        } else {
            BACKGROUND
        }
    });
    push_frame(&mut data, size, |px, py| {
        if !(round && o.covers(px, py)) {
            return [0.5, 0.5, 1.0];
        }
        let (nx, ny) = ((px - o.x) / o.radius * 0.8, (py - o.y) / o.radius * 0.8);
        let nz = (1.0 - (nx * nx + ny * ny).min(1.0)).sqrt();
        [(nx + 1.0) / 2.0, (ny + 1.0) / 2.0, (nz + 1.0) / 2.0]
    });
    let (c, s) = (colour.name(), shape.name());
    let surface = if round { "round" } else { "flat" };
    Sample {
        data,
        shape: vec![2, 3, size, size],
        caption: format!("A {surface} {c} {s}."),
        questions: vec![
            question(
                QuestionKind::Shape,
                format!("Is the {s} flat or round?"),
                surface,
            ),
            question(QuestionKind::Colour, "What colour is the shape?", c),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn video_frames_move_the_shape() {
        let mut rng = StdRng::seed_from_u64(5);
        let clip = video_clip(&mut rng, Split::Train, 4, 32);
        assert_eq!(clip.shape, vec![4, 3, 32, 32]);
        assert_eq!(clip.data.len(), 4 * 3 * 32 * 32);
        let frame = |i: usize| &clip.data[i * 3 * 1024..(i + 1) * 3 * 1024];
        assert_ne!(frame(0), frame(3), "{}", clip.caption);
    }

    #[test]
    fn only_the_maps_tell_depth_and_surface() {
        let mut rng = StdRng::seed_from_u64(6);
        let d = depth_scene(&mut rng, Split::Test, 24);
        assert_eq!(d.shape, vec![2, 3, 24, 24]);
        assert!(d.caption.contains(" in front of a "));
        let n = normal_scene(&mut rng, Split::Train, 24);
        let map = &n.data[3 * 576..];
        let flat = map
            .chunks(576)
            .all(|plane| plane.iter().all(|&v| v == plane[0]));
        assert_eq!(flat, n.caption.starts_with("A flat"), "{}", n.caption);
    }
}
