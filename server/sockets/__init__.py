"""The websocket conversations: live sessions and watchers, replays, the fan-out of frames, the answers a socket
owes, connection caps.
"""
