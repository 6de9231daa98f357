"""legion_kuka: an ament_python package that is also pip-installable."""
from setuptools import find_packages, setup

package_name = 'legion_kuka'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    # The robot description (a link to the workspace's urdf/) ships inside the package: MuJoCo and
    # the kinematics load the same files that ROS sees.
    package_data={package_name: ['urdf/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + package_name]),
        ('share/' + package_name, ['package.xml']),
    ],
    install_requires=['setuptools'],
    extras_require={'test': ['pytest', 'hypothesis']},
    zip_safe=False,
    maintainer='LEGION-ROS developers',
    maintainer_email='legion-ros@users.noreply.github.com',
    description='KUKA LBR iiwa 7 R800 embodiment: model, kinematics, twin, real2sim/sim2real, safety.',
    license='MIT',
    entry_points={
        'legion.doctor': [
            'kuka = legion_kuka.doctor:checks',
        ],
        'legion.commands': [
            'kuka = legion_kuka.cli:register',
        ],
        'legion.benchmarks': [
            'ik = legion_kuka.cli:register_bench_ik',
        ],
        'legion.embodiments': [
            'kuka = legion_kuka.metaworld_kuka:make_kuka_env',
            'twin = legion_kuka.twin_env:make_twin_env',
        ],
        # Scripted experts for demonstrations (legion_core.demos, train.demo_episodes): Meta-World's on the
        # mocap hand; on the twin, the approaches written for the KUKA's gripper where one can be copied.
        'legion.experts': [
            'kuka = legion_kuka.chain:expert_policy',
            'twin = legion_kuka.acting:demonstrator_for',
        ],
    },
)
