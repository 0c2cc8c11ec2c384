//! `switchyard check-upgrade`: is an in-place version change supported?
