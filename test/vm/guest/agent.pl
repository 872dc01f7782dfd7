#!/usr/bin/perl
# The test's hands inside the guest, on a virtio serial port. One request per line:
#   ID sh HEX                      run the shell command (hex of its text); reply: ID ok RC HEX(output)
#   ID spawn NAME                  start a lock holder: a process of its own (its own svid)
#   ID NAME open PATH              the holder opens PATH read-write (creating it)
#   ID NAME lock w|r START LEN 0|1 fcntl F_SETLK (0) or F_SETLKW (1)
#   ID NAME unlock START LEN       fcntl F_UNLCK
#   ID NAME test w|r START LEN     fcntl F_GETLK; reply: ID ok free | ID ok held TYPE START LEN PID
#   ID kill NAME SIGNAL            signal a holder (INT: a blocked F_SETLKW returns EINTR)
# Replies: "ID ok ..." or "ID err ERRNO_NAME". A holder answers by itself, so a request blocked in
# F_SETLKW does not hold up the others. Only perl-base modules: the guest runs the host's tree.
use strict;
use warnings;
use Fcntl qw(F_GETLK F_SETLK F_SETLKW F_RDLCK F_WRLCK F_UNLCK O_RDWR O_CREAT SEEK_SET);
use POSIX ();

my $port = shift @ARGV or die "usage: agent.pl PORT\n";
open(my $ch, '+<', $port) or die "agent: open $port: $!\n";
binmode $ch;
my %holders;    # name -> { pid, pipe }

sub reply { my ($line) = @_; syswrite($ch, "$line\n"); }
# Aliases (EWOULDBLOCK, EDEADLOCK) name the same numbers: the usual names come first.
sub errname { my $e = $! + 0; for (qw(EAGAIN EDEADLK), sort keys %!) { return $_ if $!{$_} } return "E$e"; }
$SIG{CHLD} = 'IGNORE';

# struct flock on x86_64: short l_type, short l_whence, (pad), off_t l_start, off_t l_len, pid_t l_pid, (pad)
sub flock_pack { my ($type, $start, $len) = @_; pack('s s x4 q q l x4', $type, SEEK_SET, $start, $len, 0); }

sub holder {
  my ($name, $in) = @_;
  my $fh;
  # A signal interrupts a blocked F_SETLKW (EINTR, reported) instead of ending the holder.
  $SIG{INT} = sub { };
  while (my $line = <$in>) {
    chomp $line;
    my ($id, $verb, @a) = split / /, $line;
    if ($verb eq 'open') {
      sysopen($fh, $a[0], O_RDWR | O_CREAT, 0644) ? reply("$id ok $$") : reply("$id err " . errname());
    } elsif ($verb eq 'lock' || $verb eq 'unlock' || $verb eq 'test') {
      unless ($fh) { reply("$id err EBADF"); next; }
      my ($type, $start, $len, $wait) = $verb eq 'unlock' ? (F_UNLCK, @a) : (($a[0] eq 'r' ? F_RDLCK : F_WRLCK), @a[1 .. $#a]);
      my $fl = flock_pack($type, $start, $len);
      my $cmd = $verb eq 'test' ? F_GETLK : ($wait ? F_SETLKW : F_SETLK);
      if (!fcntl($fh, $cmd, $fl)) { reply("$id err " . errname()); next; }
      if ($verb ne 'test') { reply("$id ok"); next; }
      my ($t, undef, $s, $l, $p) = unpack('s s x4 q q l x4', $fl);
      reply($t == F_UNLCK ? "$id ok free" : "$id ok held " . ($t == F_WRLCK ? 'w' : 'r') . " $s $l $p");
    } else {
      reply("$id err EINVAL");
    }
  }
  POSIX::_exit(0);
}

reply("0 ready $$");
while (my $line = <$ch>) {
  chomp $line;
  $line =~ s/\r$//;
  my ($id, $verb, @a) = split / /, $line;
  next unless defined $verb;
  if ($verb eq 'sh') {
    my $cmd = pack('H*', $a[0] // '');
    my $pid = fork();
    if (defined $pid && $pid == 0) {
      $SIG{CHLD} = 'DEFAULT';
      my $out = `$cmd 2>&1`;
      my $rc = $? >> 8;
      reply("$id ok $rc " . unpack('H*', $out));
      POSIX::_exit(0);
    }
    reply("$id err " . errname()) unless defined $pid;
  } elsif ($verb eq 'spawn') {
    my $name = $a[0];
    pipe(my $r, my $w) or do { reply("$id err " . errname()); next; };
    my $pid = fork();
    if (defined $pid && $pid == 0) { close $w; holder($name, $r); }
    close $r;
    $w->autoflush(1);
    $holders{$name} = { pid => $pid, pipe => $w };
    reply("$id ok $pid");
  } elsif ($verb eq 'kill') {
    my $h = $holders{$a[0]};
    if ($h && kill($a[1], $h->{pid})) { reply("$id ok"); } else { reply("$id err ESRCH"); }
  } elsif (my $h = $holders{$verb}) {
    print { $h->{pipe} } "$id @a\n";
  } else {
    reply("$id err ENOENT");
  }
}
