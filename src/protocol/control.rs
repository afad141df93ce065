//! Pause / resume / stop, taken between training steps.

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use super::event::TrainEvent;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// The trainer's end of the control channel.
pub struct Controls {
    rx: Receiver<Control>,
    events: Sender<TrainEvent>,
    stopped: bool,
}

impl Controls {
    pub fn new(rx: Receiver<Control>, events: Sender<TrainEvent>) -> Self {
        Self { rx, events, stopped: false }
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Called between steps. Drains pending messages; while paused, blocks
    /// until resumed or stopped, so no step runs. A vanished controller (all
    /// senders dropped) lets training go on.
    pub fn between_steps(&mut self) -> Flow {
        if self.stopped {
            return Flow::Stop;
        }
        loop {
            match self.rx.try_recv() {
                Ok(Control::Pause) => return self.wait_while_paused(),
                Ok(Control::Resume) => {}
                Ok(Control::Stop) => return self.stop(),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Flow::Continue,
            }
        }
    }

    fn wait_while_paused(&mut self) -> Flow {
        let _ = self.events.send(TrainEvent::Paused);
        loop {
            match self.rx.recv() {
                Ok(Control::Resume) => {
                    let _ = self.events.send(TrainEvent::Resumed);
                    return Flow::Continue;
                }
                Ok(Control::Pause) => {}
                Ok(Control::Stop) => return self.stop(),
                // Nobody can resume us any more: carry on rather than hang.
                Err(_) => {
                    let _ = self.events.send(TrainEvent::Resumed);
                    return Flow::Continue;
                }
            }
        }
    }

    fn stop(&mut self) -> Flow {
        self.stopped = true;
        Flow::Stop
    }
}
