"Run a command in a pseudo-terminal (so fastprogress draws its bars) and render what a terminal would show."
import os, pty, select, struct, fcntl, termios, subprocess, time

def run_in_pty(cmd:list, env:dict, timeout:float=600, cols:int=120)->tuple[int, str]:
    "Exit status and raw output (stdout and stderr) of `cmd` run with a pty as its terminal."
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack('HHHH', 40, cols, 0, 0))
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, 'COLUMNS': str(cols)}, close_fds=True)
    os.close(slave)
    out, end = [], time.time() + timeout
    try:
        while True:
            if time.time() > end: p.kill(); raise TimeoutError(f"{cmd} ran past {timeout} s; output so far:\n{b''.join(out).decode(errors='replace')[-3000:]}")
            r, _, _ = select.select([master], [], [], 0.5)
            if not r:
                if p.poll() is not None: break
                continue
            try: data = os.read(master, 1 << 16)
            except OSError: break        # EIO: the child closed the terminal
            if not data: break
            out.append(data)
    finally: os.close(master)
    return p.wait(), b''.join(out).decode('utf-8', errors='replace')

def screen(raw:str)->list[str]:
    "The lines a terminal shows at the end: each carriage return rewrites its line from the start."
    lines = []
    for line in raw.replace('\r\n', '\n').split('\n'):
        buf = []
        for seg in line.split('\r'): buf[:len(seg)] = list(seg)
        lines.append(''.join(buf).rstrip())
    return lines
