//! Per-socket values set by middleware, one per type (Node's habit of hanging things on
//! the socket, typed).
//!
//! Why not `http::Extensions`: its first insert allocates a hash table with room for
//! four entries, about 150 bytes per connection for the one value a socket usually holds
//! (its user). A socket holds one or two values, so a list searched by type is smaller
//! and as fast.

use std::any::{Any, TypeId};

type Entry = Box<dyn Any + Send + Sync>;

#[derive(Default)]
pub struct Extensions(Vec<Entry>);

impl Extensions {
    /// Stores `value`, returning the value of its type stored before, if any.
    pub fn insert<T: Send + Sync + 'static>(&mut self, value: T) -> Option<T> {
        let previous = self.remove::<T>();
        self.0.reserve_exact(1);
        self.0.push(Box::new(value));
        previous
    }

    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.0.iter().find_map(|e| e.downcast_ref())
    }

    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.0.iter_mut().find_map(|e| e.downcast_mut())
    }

    pub fn remove<T: 'static>(&mut self) -> Option<T> {
        let at = self
            .0
            .iter()
            .position(|e| (**e).type_id() == TypeId::of::<T>())?;
        self.0.swap_remove(at).downcast().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.0.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct User(&'static str);

    #[test]
    fn one_value_per_type() {
        let mut ext = Extensions::default();
        assert_eq!(ext.get::<User>(), None);
        assert_eq!(ext.insert(User("a")), None);
        assert_eq!(ext.insert(7u32), None);
        assert_eq!(ext.insert(User("b")), Some(User("a")));
        assert_eq!(ext.get::<User>(), Some(&User("b")));
        *ext.get_mut::<u32>().unwrap() += 1;
        assert_eq!(ext.remove::<u32>(), Some(8));
        assert_eq!(ext.remove::<u32>(), None);
        assert_eq!(ext.get::<User>(), Some(&User("b")));
    }
}
