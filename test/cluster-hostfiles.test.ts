// The cluster's host lists in the formats MPI and batch tools read (pure).
import t from 'tap';
import { compressedNodelist, mpichHostfile, openmpiHostfile, pbsNodefile } from '../src/cluster/hostfiles.js';

const hosts = [{ name: 'vm0', slots: 2 }, { name: 'vm1', slots: 1 }, { name: 'vm2', slots: 3 }];

t.test('hostfiles', async (t) => {
  t.equal(mpichHostfile(hosts), 'vm0:2\nvm1:1\nvm2:3\n');
  t.equal(openmpiHostfile(hosts), 'vm0 slots=2\nvm1 slots=1\nvm2 slots=3\n');
  t.equal(pbsNodefile(hosts), 'vm0\nvm0\nvm1\nvm2\nvm2\nvm2\n');
  t.throws(() => mpichHostfile([]), /at least one/);
  t.throws(() => mpichHostfile([{ name: 'vm0', slots: 0 }]), /slots/);
  t.throws(() => pbsNodefile([{ name: 'a b', slots: 1 }]), /invalid host name/);
  t.throws(() => openmpiHostfile([{ name: 'vm0', slots: 1 }, { name: 'vm0', slots: 1 }]), /twice/);
});

t.test('compressed node lists as Slurm prints them', async (t) => {
  t.equal(compressedNodelist(['vm0', 'vm1', 'vm2']), 'vm[0-2]');
  t.equal(compressedNodelist(['vm0']), 'vm0');
  t.equal(compressedNodelist(['vm0', 'vm1', 'vm3', 'vm5', 'vm6']), 'vm[0-1,3,5-6]');
  t.equal(compressedNodelist(['wn01', 'wn02', 'wn10']), 'wn[01-02,10]', 'zero padding kept');
  t.equal(compressedNodelist(['vm0', 'vm1', 'login', 'x7']), 'vm[0-1],login,x7');
  t.equal(compressedNodelist(['9', '10']), '[9-10]');
});
