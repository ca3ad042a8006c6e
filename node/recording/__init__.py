"""Recording: cut segments at keyframes, journal, spool, and the motion-mode gate and trim."""
