//! Images as stored and shown: turned upright, stripped of every metadata block (EXIF and its
//! GPS position, XMP, comments) by decoding and encoding again, and made smaller for thumbnails.

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use std::io::Cursor;

/// JPEG quality of re-encoded photos and thumbnails.
const JPEG_QUALITY: u8 = 88;

/// Why an image could not be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImageError {
    #[error("the image has more than {0} pixels")]
    TooLarge(u64),
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
}

/// An image after cleaning: the bytes to store, and its size upright.
pub(crate) struct Cleaned {
    /// `None`: the bytes as uploaded are kept (GIF: animation survives, and the format has no
    /// EXIF).
    pub(crate) bytes: Option<Vec<u8>>,
    pub(crate) width: u32,
    pub(crate) height: u32,
}

fn format_of(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/png" => Some(ImageFormat::Png),
        "image/webp" => Some(ImageFormat::WebP),
        "image/gif" => Some(ImageFormat::Gif),
        _ => None,
    }
}

/// Whether [`clean`] handles `content_type`.
pub(crate) fn is_image(content_type: &str) -> bool {
    format_of(content_type).is_some()
}

/// Decodes `bytes` (at most `max_pixels`; decompression bombs are refused before their
/// pixels are allocated), applies the EXIF orientation and encodes it again, which leaves every
/// metadata block behind.
pub(crate) fn clean(bytes: &[u8], content_type: &str, max_pixels: u64) -> Result<Cleaned, ImageError> {
    let format = format_of(content_type).ok_or_else(|| ImageError::Unreadable(content_type.to_owned()))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits(max_pixels));
    let mut decoder = reader.into_decoder().map_err(|e| unreadable(e, max_pixels))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageError::TooLarge(max_pixels));
    }
    if format == ImageFormat::Gif {
        return Ok(Cleaned { bytes: None, width, height });
    }
    let orientation = decoder.orientation().map_err(|e| unreadable(e, max_pixels))?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(|e| unreadable(e, max_pixels))?;
    image.apply_orientation(orientation);
    let encoded = encode(&image, format).map_err(|e| unreadable(e, max_pixels))?;
    Ok(Cleaned { width: image.width(), height: image.height(), bytes: Some(encoded) })
}

/// A copy of the image `bytes` that fits in `size` x `size`, never larger than the original;
/// JPEG, or PNG when it has transparency. Returns the bytes and their type.
pub(crate) fn thumbnail(
    bytes: &[u8],
    content_type: &str,
    size: u32,
    max_pixels: u64,
) -> Result<(Vec<u8>, &'static str), ImageError> {
    let format = format_of(content_type).ok_or_else(|| ImageError::Unreadable(content_type.to_owned()))?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits(max_pixels));
    let image = reader.decode().map_err(|e| unreadable(e, max_pixels))?;
    let image = if image.width() > size || image.height() > size { image.thumbnail(size, size) } else { image };
    let format = if image.color().has_alpha() { ImageFormat::Png } else { ImageFormat::Jpeg };
    let encoded = encode(&image, format).map_err(|e| unreadable(e, max_pixels))?;
    Ok((encoded, if format == ImageFormat::Png { "image/png" } else { "image/jpeg" }))
}

fn limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    // RGBA at 16 bits per channel is the widest a decoder makes
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    limits
}

fn encode(image: &DynamicImage, format: ImageFormat) -> image::ImageResult<Vec<u8>> {
    let mut out = Vec::new();
    match format {
        ImageFormat::Jpeg => {
            image.to_rgb8().write_with_encoder(JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY))?
        }
        ImageFormat::Png => image.write_with_encoder(PngEncoder::new(&mut out))?,
        _ => image.to_rgba8().write_with_encoder(WebPEncoder::new_lossless(&mut out))?,
    }
    Ok(out)
}

fn unreadable(e: image::ImageError, max_pixels: u64) -> ImageError {
    match e {
        image::ImageError::Limits(_) => ImageError::TooLarge(max_pixels),
        other => ImageError::Unreadable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = DynamicImage::ImageRgb8(RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10])));
        encode(&image, ImageFormat::Jpeg).unwrap()
    }

    #[test]
    fn thumbnails_fit_and_never_grow() {
        let photo = jpeg(400, 200);
        let (small, kind) = thumbnail(&photo, "image/jpeg", 96, 1 << 24).unwrap();
        let small = image::load_from_memory(&small).unwrap();
        assert_eq!((small.width(), small.height(), kind), (96, 48, "image/jpeg"));
        let (same, _) = thumbnail(&photo, "image/jpeg", 1280, 1 << 24).unwrap();
        let same = image::load_from_memory(&same).unwrap();
        assert_eq!((same.width(), same.height()), (400, 200));
    }

    #[test]
    fn too_many_pixels_are_refused_before_decoding() {
        assert!(matches!(clean(&jpeg(300, 300), "image/jpeg", 300 * 299), Err(ImageError::TooLarge(_))));
        assert!(clean(&jpeg(300, 300), "image/jpeg", 300 * 300).is_ok());
        assert!(matches!(clean(b"\xff\xd8\xff not really", "image/jpeg", 1 << 20), Err(ImageError::Unreadable(_))));
    }
}
