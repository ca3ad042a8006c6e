"""Object detection in the store: tracking, the detector in a child process, remote detector workers."""
