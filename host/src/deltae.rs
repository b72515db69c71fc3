//! ΔE2000 colour difference between a delivery and its render.
