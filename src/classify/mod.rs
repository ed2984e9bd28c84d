//! Process classification into groups and subgroups.
