//! Delivery end to end.
